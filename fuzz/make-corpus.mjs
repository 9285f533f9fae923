#!/usr/bin/env node
// Writes the seed corpora under fuzz/corpus/<target>/: a few valid messages per target, in the
// layout of include/vtoe_abi.h (little-endian, as on the hosts vtoe runs on) and of each
// harness's input.  Run after an ABI change:  node fuzz/make-corpus.mjs  (needs dist/: npx tsc)
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VTOE_ABI_VERSION, VTOE_CTL_MAGIC, CTL_REQ_BYTES, CTL_REP_BYTES, Op, Event } from '../dist/abi.js';
import { encodeRej, encodeRep, encodeReq } from '../dist/agent/verbs-wire.js';

const here = dirname(fileURLToPath(import.meta.url));
const AF_INET = 2;
const AF_INET6 = 10;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const SCM_CREDENTIALS = 2;

function write(target, seeds) {
  const dir = join(here, 'corpus', target);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  seeds.forEach((b, i) => writeFileSync(join(dir, `seed-${String(i + 1).padStart(2, '0')}`), b));
}

/** Bytes appended field by field, little-endian. */
class Out {
  parts = [];
  u8(v) { this.parts.push(Buffer.from([v & 255])); return this; }
  u16(v) { const b = Buffer.alloc(2); b.writeUInt16LE(v); this.parts.push(b); return this; }
  u32(v) { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); this.parts.push(b); return this; }
  u64(v) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v))); this.parts.push(b); return this; }
  bytes(b) { this.parts.push(Buffer.from(b)); return this; }
  get() { return Buffer.concat(this.parts); }
}

function sockaddr(family, port, addr) {
  const b = Buffer.alloc(24);
  b.writeUInt16LE(family, 0);
  b.writeUInt16LE(port, 2);
  Buffer.from(addr).copy(b, 8);
  return b;
}

function ctlReq({ op, seq = 1, sid = 0, cid = 0n, arg = 0, local, remote, name = '' }) {
  const b = Buffer.alloc(CTL_REQ_BYTES);
  b.writeUInt32LE(VTOE_CTL_MAGIC, 0);
  b.writeUInt16LE(VTOE_ABI_VERSION, 4);
  b.writeUInt16LE(op, 6);
  b.writeUInt32LE(seq, 8);
  b.writeUInt32LE(sid, 12);
  b.writeBigUInt64LE(cid, 16);
  b.writeUInt32LE(arg, 24);
  (local ?? Buffer.alloc(24)).copy(b, 32);
  (remote ?? Buffer.alloc(24)).copy(b, 56);
  b.write(name, 80, 15, 'latin1');
  return b;
}

function ctlRep({ event, seq = 1, err = 0, sid = 0, fabric = 0, cid = 0n, side = 0, ringSize = 0, nfds = 0, reason = 0, spinUs = 0, skipUntil = 0 }) {
  const b = Buffer.alloc(CTL_REP_BYTES);
  b.writeUInt32LE(VTOE_CTL_MAGIC, 0);
  b.writeUInt16LE(VTOE_ABI_VERSION, 4);
  b.writeUInt16LE(event, 6);
  b.writeUInt32LE(seq, 8);
  b.writeInt32LE(err, 12);
  b.writeUInt32LE(sid, 16);
  b.writeUInt32LE(fabric, 20);
  b.writeBigUInt64LE(cid, 24);
  b.writeUInt32LE(side, 32);
  b.writeUInt32LE(ringSize, 36);
  b.writeUInt32LE(nfds, 40);
  b.writeUInt32LE(reason, 44);
  b.writeUInt32LE(spinUs, 48);
  b.writeUInt32LE(skipUntil, 52);
  return b;
}

const lo4 = [127, 0, 0, 1];
const lo6 = [...Array(15).fill(0), 1];

// ctl_request: [flags, descriptors, socket ok, length beyond the bytes] + the request.
const prefix = (nfds) => Buffer.from([0, nfds, nfds ? 1 : 0, 0]);
write('ctl_request', [
  Buffer.concat([prefix(0), ctlReq({ op: Op.HELLO, arg: 4242, name: 'postgres: walwr' })]), // 15 bytes, the most
  Buffer.concat([prefix(1), ctlReq({ op: Op.CONNECT, seq: 2, local: sockaddr(AF_INET, 40000, lo4), remote: sockaddr(AF_INET, 5000, lo4) })]),
  Buffer.concat([prefix(1), ctlReq({ op: Op.LISTEN, seq: 3, sid: 7, arg: 128, local: sockaddr(AF_INET6, 8080, lo6) })]),
  Buffer.concat([prefix(0), ctlReq({ op: Op.ESTABLISH, seq: 4, sid: 8, cid: 99n })]),
  Buffer.concat([prefix(1), ctlReq({ op: Op.BELL, seq: 5, sid: 8, cid: 99n, arg: 1 | 0x100 })]),
]);

// ctl_cmsg: control buffers as the kernel writes them (struct cmsghdr: size_t len, int level,
// int type, then the data, each header padded to 8 bytes).
function cmsg(level, type, data) {
  const len = 16 + data.length;
  const b = Buffer.alloc((len + 7) & ~7);
  b.writeBigUInt64LE(BigInt(len), 0);
  b.writeInt32LE(level, 8);
  b.writeInt32LE(type, 12);
  Buffer.from(data).copy(b, 16);
  return b;
}
const fds = (...n) => new Out().bytes(Buffer.concat(n.map((f) => new Out().u32(f).get()))).get();
write('ctl_cmsg', [
  cmsg(SOL_SOCKET, SCM_RIGHTS, fds(5)),
  cmsg(SOL_SOCKET, SCM_RIGHTS, fds(5, 6, 7)),
  Buffer.concat([cmsg(SOL_SOCKET, SCM_CREDENTIALS, new Out().u32(100).u32(0).u32(0).get()), cmsg(SOL_SOCKET, SCM_RIGHTS, fds(9))]),
]);

// shim_reply: [what the agent's end does, seq the shim waits for] + the datagram(s).  Mode bit
// 0: send; 1: two datagrams; 2: fix the header up; 3-6: descriptors attached; 7: close after.
const reply = (mode, seq, ...dgrams) => Buffer.concat([Buffer.from([mode]), new Out().u32(seq).get(), ...dgrams]);
write('shim_reply', [
  reply(1, 1, ctlRep({ event: Event.ACK, seq: 1, spinUs: 50 })),
  reply(1 | (3 << 3), 2, ctlRep({ event: Event.CONNECT_RESPONSE, seq: 2, sid: 3, fabric: 1, cid: 77n, ringSize: 262144, nfds: 3 })),
  reply(1 | (1 << 3), 3, ctlRep({ event: Event.ACK, seq: 3, side: 1, ringSize: 262144, nfds: 1 })),
  reply(1, 4, ctlRep({ event: Event.ERROR, seq: 4, err: 71 })),
  reply(1, 5, ctlRep({ event: Event.FALLBACK, seq: 5, reason: 7, skipUntil: 123456 })),
  reply(1 | 2, 6, ctlRep({ event: Event.ACK, seq: 5 }), ctlRep({ event: Event.ACK, seq: 6 })),
  reply(0x80, 7),
]);

// shim_ring: the harness's reader, field by field (fuzz/shim_ring.c, LLVMFuzzerTestOneInput).
const SIZE8K = 8, LARGE16K = 1 << 7, LARGE32K = 2 << 7, SIDE1 = 32, NOBELL = 1024, VERBS = 2048;
function ring({ cfg = 0, pages, cid = 1, base = 0n, ops }) {
  const o = new Out().u16(cfg).u8(pages - 1).u64(cid).u64(base).u8(0);
  for (const op of ops) o.bytes(op);
  return o.get();
}
const op = {
  publish: (n) => new Out().u8(1).u16(n).u8(0).u8(1).get(),
  consume: (n) => new Out().u8(1).u16(n).u8(0).u8(0).get(),
  recv: (n, flagIdx = 0) => new Out().u8(2).u16(n).u8(flagIdx).u8(0).get(),
  send: (n) => new Out().u8(3).u16(n).u8(0).get(),
  poll: (ev) => new Out().u8(4).u8(ev).u8(0).get(), // no kernel answer given
  sleep: (ev) => new Out().u8(5).u8(ev).get(),
  blockingRecv: (n) => new Out().u8(6).u16(n).u8(0).u8(0).u8(50).get(),
  query: () => new Out().u8(8).get(),
  shutdown: (how) => new Out().u8(9).u8(how).get(),
  ring: () => new Out().u8(10).u8(0).get(),
  kwatch: () => new Out().u8(11).u8(0).get(),
  // peer write, mode 2: field = another field + delta (fields[] order in shim_ring.c)
  finAtHead: (ring) => new Out().u8(0).u8(6 + 10 * ring + 1).u8(2).u16(0).u8(6 + 10 * ring).get(),
  setFin: (ring) => new Out().u8(0).u8(6 + 10 * ring + 3).u8(0).u16(0).u32(1).get(),
};
write('shim_ring', [
  ring({ pages: 3, ops: [op.publish(100), op.recv(200), op.send(300), op.poll(3), op.query()] }),
  ring({ cfg: SIZE8K | LARGE32K | SIDE1, pages: 21, ops: [op.kwatch(), op.send(20000), op.send(20000), op.poll(3), op.consume(8192), op.sleep(2), op.send(40000), op.publish(64), op.recv(64)] }),
  ring({ pages: 3, base: 2n ** 64n - 1000n, ops: [op.publish(3000), op.recv(4096, 1), op.recv(4096), op.kwatch(), op.publish(10), op.recv(5)] }),
  ring({ cfg: LARGE16K, pages: 11, ops: [op.publish(50), op.finAtHead(1), op.setFin(1), op.recv(100), op.recv(100), op.shutdown(1), op.send(10)] }),
  ring({ cfg: NOBELL | VERBS, pages: 3, ops: [op.send(5000), op.ring(), op.blockingRecv(10), op.sleep(1), op.publish(1), op.recv(1)] }),
]);

// verbs_rx: [ring size 2^(12+n), receive depth - 1, initial credits, expect auth, MAC] then
// steps (fuzz/verbs_rx.cc): 0 our process sends, 1 it reads, 2 the peer keeps the protocol,
// 3-4 the peer sends whatever it likes.
const mac = Array.from({ length: 16 }, (_, i) => i * 17);
const rxHead = (expect) => new Out().u8(6).u8(63).u8(64).u8(expect).bytes(mac);
const fair = (kind, bytes) => new Out().u8(2).u64(0).u64(1).u8(kind).u64(bytes).get();
const steps = (o, ...ops) => { for (const x of ops) o.bytes(x); return o.get(); };
write('verbs_rx', [
  steps(rxHead(1), Buffer.from([2]), fair(0, 1000), fair(0, 70000), new Out().u8(1).u64(5000).get(), fair(3, 0), fair(1, 0), fair(2, 0)),
  steps(rxHead(0), new Out().u8(0).u64(4096).get(), fair(3, 0), fair(0, 262144), new Out().u8(1).u64(262144).get(), fair(0, 10)),
  steps(rxHead(1), new Out().u8(3).u8(8 | 4).u32(5 << 29).u8(0).u8(0).u8(0).get(), fair(0, 1)),
  steps(rxHead(0), new Out().u8(3).u8(4).u32(0).u8(0).u8(0).u8(1).get(), new Out().u8(4).u8(0).u32(3 << 29).u64(0).u64(1).bytes(mac).get()),
]);

// verbs_wire: the three kinds of private data, as one agent encodes them for another.
const window = { ringAddr: 0x7f1234567000n, ringRkey: 0x1234, mailboxAddr: 0x555500001230n, mailboxRkey: 0xfedcba98, recvCredits: 64 };
write('verbs_wire', [
  encodeReq({ ...window, sid: 42, dstAddress: '192.0.2.1', dstPort: 5001, srcPort: 40000, ringSize: 262144 }),
  encodeReq({ ...window, sid: 7, dstAddress: 'fe80::1:2', dstPort: 80, srcPort: 50000, ringSize: 4096 }),
  encodeReq({ ...window, sid: 9, dstAddress: '::ffff:10.1.2.3', dstPort: 443, srcPort: 1024, ringSize: 1 << 26 }),
  encodeRep({ ...window, ringSize: 262144, nonce: Buffer.alloc(16, 0x5a), mac: Buffer.alloc(16, 0xa5) }),
  encodeRej(2),
]);
console.log(`seed corpora written under ${join(here, 'corpus')}`);
