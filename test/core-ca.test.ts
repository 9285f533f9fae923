// The core CA on its own: requests in the orders processes can produce them, with a fake
// reply sink and fake shared links, so every case is deterministic.
import { describe, expect, it, vi } from 'vitest';
import { ABI, ATTACH_BELL, BELL_REPLY } from '../src/abi.js';
import { MAX_PROGRAMS, OTHER_PROGRAMS } from '../src/agent/stats.js';
import { createLogger } from '../src/log.js';
import { wireMs } from '../src/agent/short-connections.js';
import type { CtlRequest, SockAddr, TcpSocketIdentity } from '../src/native.js';
import { parsePolicy } from '../src/policy.js';
import { acceptedFd, addr, CLIENT, clientFd, fakeSocketOf, LISTEN_FD, SERVER, setup } from './helpers/fake-core.js';

/** Runs fn with vitest's fake timers, which are put back whatever happens. */
function withFakeTimers(fn: () => void): void {
  vi.useFakeTimers();
  try {
    fn();
  } finally {
    vi.useRealTimers();
  }
}

describe('core CA', () => {
  it('gives a connection\'s region to a process that sends one of its sockets (ATTACH), and to no other', () => {
    const t = setup();
    const { cid, acc } = t.establish(40002);
    const HEIR = 3; // e.g. a program exec'd by the server, or handed the socket with SCM_RIGHTS
    t.core.processOpened(HEIR, { pid: 300, uid: 0 });
    t.send(HEIR, ABI.op.HELLO, { name: 'heir' });
    const rep = t.send(HEIR, ABI.op.ATTACH, { cid, fd: 111 })!;
    expect(rep).toMatchObject({ event: ABI.ev.ACK, cid, side: 1, sid: acc.sid, fabric: ABI.fabric.SHM, ringSize: 4096 });
    expect(t.replies.at(-1)!.fds).toEqual([10]);
    for (const fields of [{ cid, fd: 999 }, { cid }, { cid: cid + 1n, fd: 111 }]) {
      const refused = t.send(HEIR, ABI.op.ATTACH, fields)!;
      expect(refused.event).toBe(ABI.ev.ERROR);
      expect(t.replies.at(-1)!.fds).toBeUndefined();
    }
    expect(t.dropped).toEqual([]);
  });

  it('with ATTACH_BELL, also gives the peer\'s doorbell of the side whose socket comes with it', () => {
    const t = setup();
    const { cid } = t.establish(40003);
    const SANDBOXED = 3; // about to install a seccomp filter that forbids the channel
    t.core.processOpened(SANDBOXED, { pid: 301, uid: 0 });
    t.send(SANDBOXED, ABI.op.HELLO, { name: 'sshd' });
    expect(t.send(SANDBOXED, ABI.op.ATTACH, { cid, fd: 111, arg: ATTACH_BELL })).toMatchObject({ event: ABI.ev.ACK, side: 1 });
    expect(t.replies.at(-1)!.fds).toEqual([10, 20]);
    expect(t.send(SANDBOXED, ABI.op.ATTACH, { cid, fd: 110, arg: ATTACH_BELL })).toMatchObject({ event: ABI.ev.ACK, side: 0 });
    expect(t.replies.at(-1)!.fds).toEqual([10, 21]);
    expect(t.send(SANDBOXED, ABI.op.ATTACH, { cid, fd: 999, arg: ATTACH_BELL })!.event).toBe(ABI.ev.ERROR);
    expect(t.replies.at(-1)!.fds).toBeUndefined();
  });

  it('rings, drains and shuts a doorbell for the side whose socket comes with the request, and for no other', () => {
    const t = setup();
    const { cid } = t.establish(40004);
    const replies = t.replies.length;
    t.send(SERVER, ABI.op.BELL, { cid, fd: 111, arg: ABI.bell.RING });
    t.send(CLIENT, ABI.op.BELL, { cid, fd: 110, arg: ABI.bell.DRAIN });
    expect(t.replies.length).toBe(replies); // notes
    const ack = t.send(CLIENT, ABI.op.BELL, { cid, fd: 110, arg: ABI.bell.SHUT_WR | BELL_REPLY })!;
    expect(ack.event).toBe(ABI.ev.ACK);
    expect(t.links[0]!.bells).toEqual([[1, ABI.bell.RING], [0, ABI.bell.DRAIN], [0, ABI.bell.SHUT_WR]]);
    // A connection freed meanwhile: nothing to do, but a waiting sender still gets its answer.
    expect(t.send(CLIENT, ABI.op.BELL, { cid: cid + 7n, fd: 110, arg: ABI.bell.SHUT_RDWR | BELL_REPLY })!.event).toBe(ABI.ev.ACK);
    expect(t.dropped).toEqual([]);
    // Someone else's socket, no socket, or an op that does not exist: the channel goes.
    t.send(SERVER, ABI.op.BELL, { cid, fd: 999, arg: ABI.bell.RING });
    expect(t.dropped).toEqual([SERVER]);
    t.send(CLIENT, ABI.op.BELL, { cid, arg: ABI.bell.RING });
    expect(t.dropped).toEqual([SERVER, CLIENT]);
    expect(t.links[0]!.bells).toHaveLength(3);
  });

  it('drops a channel that asks for a doorbell operation that does not exist', () => {
    const t = setup();
    const { cid } = t.establish(40005);
    t.send(CLIENT, ABI.op.BELL, { cid, fd: 110, arg: 9 });
    expect(t.dropped).toEqual([CLIENT]);
    expect(t.links[0]!.bells).toEqual([]);
  });

  it('answers a request that fails inside the agent with EIO, once, instead of leaving the process waiting', () => {
    const t = setup();
    const { cid } = t.establish(40003);
    const before = t.replies.length;
    const rep = t.send(CLIENT, ABI.op.ATTACH, { cid, fd: 666 })!;
    expect(rep.event).toBe(ABI.ev.ERROR);
    expect(rep.err).toBe(5); // EIO
    expect(t.replies.length).toBe(before + 1);
  });

  it('counts a connection offloaded when the RTU note arrives after the server accepted and closed', () => {
    const t = setup();
    const { sid, cid } = t.connect(40001);
    const acc = t.accept(40001);
    expect(acc.event).toBe(ABI.ev.CONNECT_ESTABLISHED);
    t.send(SERVER, ABI.op.CLOSE, { sid: acc.sid!, cid });
    t.send(CLIENT, ABI.op.ESTABLISH, { sid, cid });
    expect(t.dropped).toEqual([]);
    expect(t.counters.offloaded).toBe(1);
    const active = t.log.list(cid.toString()).filter((e) => e.side === 0 && e.machine === 'ib_cm').map((e) => e.to);
    expect(active.slice(0, 3)).toEqual(['REQ_SENT', 'REP_RCVD', 'ESTABLISHED']);
  });

  it('frees a connection whose client goes away only after its TIMEWAIT ended (the peer reset it)', () => {
    withFakeTimers(() => {
      const t = setup();
      const { cid, acc } = t.establish(40050);
      t.send(SERVER, ABI.op.CLOSE, { sid: acc.sid!, cid, arg: ABI.close.RESET });
      vi.runAllTimers(); // TIMEWAIT over: both ends IDLE before the client's channel closes
      t.core.processClosed(CLIENT, 'closed');
      expect(t.core.processes.has(CLIENT)).toBe(false);
      expect(t.core.connections.size).toBe(0);
    });
  });

  it('keeps a connection whose directions both ended until its reader has read what its ring holds', () => {
    withFakeTimers(() => {
      const t = setup();
      const { sid, cid, acc } = t.establish(40051);
      t.links[0]!.index[0] = { head: 3_000_000, tail: 1_000_000 }; // 2 MB the server has not read yet
      t.send(CLIENT, ABI.op.CLOSE, { sid, cid });
      t.send(SERVER, ABI.op.CLOSE, { sid: acc.sid!, cid });
      vi.advanceTimersByTime(1000); // TIMEWAIT (0 ms here) is long over
      expect(t.core.connections.size).toBe(1);
      t.links[0]!.index[0].tail = 3_000_000;
      vi.advanceTimersByTime(100);
      expect(t.core.connections.size).toBe(0);
      expect(t.counters.closedBytesReceived).toBe(3_000_000);
    });
  });

  it('frees such a connection once its reader has closed, or after a bound', () => {
    withFakeTimers(() => {
      const t = setup();
      for (const [port, how] of [[40052, 'closed'], [40053, 'never reads']] as const) {
        const { sid, cid, acc } = t.establish(port);
        const link = t.links.at(-1)!;
        link.index[0] = { head: 5000, tail: 0 };
        t.send(CLIENT, ABI.op.CLOSE, { sid, cid });
        t.send(SERVER, ABI.op.CLOSE, { sid: acc.sid!, cid });
        vi.advanceTimersByTime(1000);
        expect(t.core.connections.size, how).toBe(1);
        if (how === 'closed') link.rdShut[0] = true; // the server's close: it reads no more
        vi.advanceTimersByTime(how === 'closed' ? 100 : 30_000);
        expect(t.core.connections.size, how).toBe(0);
      }
    });
  });

  it('answers a kernel client on a both-mode listener with FALLBACK', () => {
    const t = setup();
    expect(t.accept(40002).event).toBe(ABI.ev.FALLBACK);
    expect(t.core.pendingCount).toBe(0);
  });

  it('publishes on each listener page of a port how many connections to it wait for a claim', () => {
    const t = setup();
    const first = t.replies.find((r) => r.client === SERVER && r.rep.sid === t.listenSid && r.fds)!;
    expect(first.fds).toHaveLength(1);
    const page = t.pages.get(first.fds![0]!)!;
    expect(page.waiting).toBe(0);
    t.connect(40100);
    const aborted = t.connect(40101);
    expect(page.waiting).toBe(2); // counted before the CONNECT's reply
    t.accept(40100);
    expect(page.waiting).toBe(1);
    t.send(CLIENT, ABI.op.CLOSE, { sid: aborted.sid, cid: aborted.cid, arg: ABI.close.ABORTED });
    expect(page.waiting).toBe(0);
    // A second listener on the port (SO_REUSEPORT, another process): the kernel picks which one
    // accepts, so every page of the port counts every connection to it.
    t.connect(40102);
    const OTHER = 3;
    t.core.processOpened(OTHER, { pid: 300, uid: 0 });
    t.send(OTHER, ABI.op.HELLO, { name: 'worker' });
    t.extraSockets.set(8_200_000, { local: addr(5000), remote: null, listening: true, inAgentNetns: null });
    const sid = t.send(OTHER, ABI.op.OPEN)!.sid!;
    expect(t.send(OTHER, ABI.op.LISTEN, { sid, local: addr(5000), arg: 16, fd: 8_200_000 })!.event).toBe(ABI.ev.ACK);
    const second = t.pages.get(t.replies.at(-1)!.fds![0]!)!;
    expect([page.waiting, second.waiting]).toEqual([1, 1]);
    t.accept(40102);
    expect([page.waiting, second.waiting]).toEqual([0, 0]);
    // A listener that closes closes its page.
    t.send(SERVER, ABI.op.CLOSE, { sid: t.listenSid });
    expect([page.closed, second.closed]).toEqual([true, false]);
  });

  it('answers a kernel client without reading its socket when nothing waits on the ports it names', () => {
    const t = setup();
    const read: number[] = [];
    const kernelSays = t.core.socketOf;
    t.core.socketOf = (fd) => { read.push(fd); return kernelSays(fd); };
    const named = (port: number) => ({ sid: t.listenSid, local: addr(5000), remote: addr(port), fd: acceptedFd(port) });
    expect(t.send(SERVER, ABI.op.ACCEPT, named(40010))).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.PEER_NOT_OFFLOADED });
    expect(read).toEqual([]);
    expect(t.counters.kernelAccepted).toBe(1);
    expect(t.closed).toContain(acceptedFd(40010)); // the socket passed is closed all the same
    // A connection waits on those ports: its socket must prove the claim, as before.
    const { cid } = t.connect(40011);
    expect(t.send(SERVER, ABI.op.ACCEPT, named(40011))).toMatchObject({ event: ABI.ev.CONNECT_ESTABLISHED, cid });
    expect(read).toContain(acceptedFd(40011));
    // Ports that lie get kernel TCP; the connection they hid still waits for its own socket.
    const other = t.connect(40012);
    const copy = 8_100_012; // the process's own copy of the accepted socket, which the agent closes
    t.extraSockets.set(copy, fakeSocketOf(acceptedFd(40012)));
    expect(t.send(SERVER, ABI.op.ACCEPT, { ...named(40013), fd: copy })!.event).toBe(ABI.ev.FALLBACK);
    expect(t.core.pendingCount).toBe(1);
    expect(t.accept(40012)).toMatchObject({ event: ABI.ev.CONNECT_ESTABLISHED, cid: other.cid });
  });

  it('rejects a connection whose rendezvous failed, and frees it', () => {
    const t = setup();
    const { sid, cid } = t.connect(40003);
    t.send(CLIENT, ABI.op.CLOSE, { sid, cid, arg: ABI.close.ABORTED });
    expect(t.core.connections.size).toBe(0);
    expect(t.accept(40003).event).toBe(ABI.ev.FALLBACK);
    expect(t.counters.offloaded).toBe(0);
    expect(t.counters.rejected).toBe(1);
  });

  it('falls back when nothing offload-capable listens, and forgets the SID', () => {
    const t = setup();
    const sid = t.send(CLIENT, ABI.op.OPEN)!.sid!;
    const rep = t.send(CLIENT, ABI.op.CONNECT, { sid, local: addr(40004), remote: addr(5999), fd: clientFd(40004) })!;
    expect(rep).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.PEER_NOT_OFFLOADED });
    expect(t.core.sockets.has(sid)).toBe(false);
    expect(t.counters.fallbackReasons.get('peer-not-offloaded')).toBe(1);
  });

  it('refuses requests about a SID another process owns', () => {
    const t = setup();
    const { sid, cid } = t.connect(40005);
    const rep = t.send(SERVER, ABI.op.CONNECT, { sid, local: addr(1), remote: addr(5000), fd: clientFd(1) })!;
    expect(rep).toMatchObject({ event: ABI.ev.ERROR });
    t.send(SERVER, ABI.op.ESTABLISH, { sid, cid });
    expect(t.dropped).toEqual([SERVER]);
  });

  it('requires HELLO first', () => {
    const t = setup();
    t.core.processOpened(3, { pid: 300, uid: 0 });
    expect(t.send(3, ABI.op.OPEN)).toMatchObject({ event: ABI.ev.ERROR });
  });

  it('resets connections nobody accepted when the listener closes', () => {
    const t = setup();
    t.connect(40006);
    expect(t.core.pendingCount).toBe(1);
    t.core.processClosed(SERVER, 'closed');
    expect(t.core.pendingCount).toBe(0);
    expect(t.core.connections.size).toBe(0);
  });

  it('records a reset when a side that died left data unread, though its death was noted as a FIN', () => {
    const t = setup();
    const { cid } = t.establish(40007);
    t.core.processClosed(CLIENT, 'closed'); // the CM hears of the death first: a FIN
    t.links[0]!.end!(0, 'reset'); // then the native side finds the client's rx ring unread
    const server = t.log.list(cid.toString()).filter((e) => e.side === 1 && e.machine === 'tcp').map((e) => e.event);
    expect(server).toEqual(['rcv_syn', 'rcv_ack', 'rcv_fin', 'rcv_rst']);
    t.links[0]!.end!(0, 'reset'); // repeated: nothing more happens
    expect(t.log.list(cid.toString()).filter((e) => e.side === 1 && e.machine === 'tcp')).toHaveLength(4);
  });

  it('hangs up a writer whose peer is gone (PEER_RESET), and drops one that lies about it', () => {
    const t = setup();
    const { sid, cid, acc } = t.establish(40008);
    t.send(SERVER, ABI.op.PEER_RESET, { sid: acc.sid!, cid }); // the client still reads
    expect(t.dropped).toEqual([SERVER]);
    expect(t.links[0]!.hungUp).toEqual([]);
    t.links[0]!.rdShut[0] = true; // the server is gone: nobody reads the client's ring
    t.send(CLIENT, ABI.op.PEER_RESET, { sid, cid });
    expect(t.links[0]!.hungUp).toEqual([0]);
    expect(t.dropped).toEqual([SERVER]);
  });
});

describe('core CA: destinations held on kernel TCP', () => {
  const connectTo = (t: ReturnType<typeof setup>, remote: SockAddr, clientPort: number) =>
    t.send(CLIENT, ABI.op.CONNECT, { sid: 0, local: addr(clientPort), remote, fd: clientFd(clientPort) })!;

  it('tells a client of a server without the shim that it need not ask for VTOE_KERNEL_HOLD_MS', () => {
    const t = setup({ kernelHoldMs: 1000 });
    t.core.now = () => 50_000;
    const asked: SockAddr[] = [];
    t.core.kernelListening = (to) => { asked.push(to); return true; };
    const rep = connectTo(t, addr(6000), 44000);
    expect(rep).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.PEER_NOT_OFFLOADED, skipUntilMs: wireMs(51_000) });
    expect(asked).toEqual([addr(6000)]);
    // A registered listener is offloaded as before; nobody asks the kernel about it.
    t.connect(44001);
    expect(asked).toHaveLength(1);
  });

  it('promises nothing where nothing listens yet, or where the listeners cannot be read', () => {
    // A client retrying until its server is up must be offloaded once the server is.
    const t = setup({ kernelHoldMs: 1000 });
    t.core.now = () => 50_000;
    expect(connectTo(t, addr(6000), 44100)).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.PEER_NOT_OFFLOADED, skipUntilMs: 0 });
    t.core.kernelListening = () => { throw new Error('EPERM: sock_diag'); };
    expect(connectTo(t, addr(6000), 44101)).toMatchObject({ event: ABI.ev.FALLBACK, skipUntilMs: 0 });
    expect(t.counters.fallbackReasons.get('peer-not-offloaded')).toBe(2);
  });

  it('holds a destination a policy rule keeps on kernel TCP, and one no fabric reaches', () => {
    const t = setup({ kernelHoldMs: 250 }, undefined, parsePolicy('tcp connect * 127.0.0.1:7000'));
    t.core.now = () => 80_000;
    expect(connectTo(t, addr(7000), 44200)).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.POLICY, skipUntilMs: wireMs(80_250) });
    const remote: SockAddr = { family: 4, address: '192.0.2.1', port: 7001, scopeId: 0 }; // no verbs fabric here
    expect(connectTo(t, remote, 44201)).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.NO_FABRIC, skipUntilMs: wireMs(80_250) });
  });

  it('holds nothing with VTOE_KERNEL_HOLD_MS=0, nor for reasons that can change at the next connect', () => {
    const t = setup({ kernelHoldMs: 0 }, undefined, parsePolicy('tcp connect * 127.0.0.1:7000'));
    let reads = 0;
    t.core.kernelListening = () => { reads++; return true; };
    expect(connectTo(t, addr(7000), 44300).skipUntilMs).toBe(0);
    expect(connectTo(t, addr(6000), 44301).skipUntilMs).toBe(0);
    expect(reads).toBe(0); // no hold to give, so the listeners are not read
    const u = setup({ kernelHoldMs: 1000, maxConnections: 1 });
    u.core.kernelListening = () => true;
    u.connect(44302);
    const full = connectTo(u, addr(5000), 44303); // resources: free again as soon as one closes
    expect(full).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.RESOURCES, skipUntilMs: 0 });
  });
});

describe('core CA: listeners whose connections are short', () => {
  /** n short connections (64 B each way, closed at once) to the listener, in a row. */
  const shortRun = (t: ReturnType<typeof setup>, firstPort: number, n = 8) => {
    for (let i = 0; i < n; i++) {
      const { sid, acc } = t.establish(firstPort + i);
      t.links.at(-1)!.index = [{ head: 64, tail: 64 }, { head: 64, tail: 64 }];
      t.send(CLIENT, ABI.op.CLOSE, { sid });
      t.send(SERVER, ABI.op.CLOSE, { sid: acc.sid! });
    }
  };

  it('sends a short listener\'s clients to kernel TCP and says until when none need ask', () => {
    const t = setup({ shortHoldMs: 1000 });
    let now = 50_000;
    t.core.now = () => now;
    shortRun(t, 41000);
    const open = t.send(CLIENT, ABI.op.OPEN)!.sid!;
    const rep = t.send(CLIENT, ABI.op.CONNECT, { sid: open, local: addr(41100), remote: addr(5000), fd: clientFd(41100) })!;
    expect(rep).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.SHORT_LIVED, skipUntilMs: wireMs(51_000) });
    expect(t.counters.fallbackReasons.get('short-lived')).toBe(1);
    // The listener's process, told too on its next ACCEPT of a kernel client.
    expect(t.accept(41100)).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.PEER_NOT_OFFLOADED, skipUntilMs: wireMs(51_000) });
    // After the hold one connection is offloaded again, as a probe.
    now = 51_000;
    t.connect(41101);
    expect(t.accept(41101).event).toBe(ABI.ev.CONNECT_ESTABLISHED);
  });

  it('promises the listener nothing while a connection to it is still unclaimed, nor to another process', () => {
    const t = setup({ shortHoldMs: 1000 });
    t.core.now = () => 50_000;
    shortRun(t, 42000);
    expect(t.accept(42100).skipUntilMs).toBe(wireMs(51_000));
    const OTHER = 3; // e.g. a forked worker that accepts on the server's listener
    t.core.processOpened(OTHER, { pid: 300, uid: 0 });
    t.send(OTHER, ABI.op.HELLO, { name: 'worker' });
    const listenSid = t.core.listeners.find(4, '127.0.0.1', 5000)!.sid;
    const other = t.send(OTHER, ABI.op.ACCEPT, { sid: listenSid, fd: acceptedFd(42101) })!;
    expect(other).toMatchObject({ event: ABI.ev.FALLBACK, skipUntilMs: 0 });

    // A connection made before the listener turned short, not yet accepted: no promise.
    const u = setup({ shortHoldMs: 1000 });
    u.core.now = () => 50_000;
    shortRun(u, 43000, 7);
    u.connect(43050); // pending
    shortRun(u, 43007, 1); // the eighth short one
    expect(u.accept(43100).skipUntilMs).toBe(0);
    expect(u.accept(43050).event).toBe(ABI.ev.CONNECT_ESTABLISHED);
    expect(u.accept(43101).skipUntilMs).toBe(wireMs(51_000));
  });

  it('keeps offloading a listener whose connections move more, and does nothing when switched off', () => {
    for (const [config, head] of [[{}, 20_000], [{ shortBytes: 0 }, 64]] as const) {
      const t = setup(config);
      for (let i = 0; i < 10; i++) {
        const { sid, acc } = t.establish(44000 + i);
        t.links.at(-1)!.index = [{ head, tail: head }, { head: 64, tail: 64 }];
        t.send(CLIENT, ABI.op.CLOSE, { sid });
        t.send(SERVER, ABI.op.CLOSE, { sid: acc.sid! });
      }
      t.connect(44100);
      expect(t.counters.fallbackReasons.get('short-lived')).toBeUndefined();
    }
  });

  it('counts what a FALLBACK note says it carried, within reason', () => {
    const t = setup();
    t.send(CLIENT, ABI.op.FALLBACK, { arg: ABI.fb.SHORT_LIVED, cid: 500n });
    t.send(CLIENT, ABI.op.FALLBACK, { arg: ABI.fb.SHORT_LIVED });
    expect(t.counters.fallbackReasons.get('short-lived')).toBe(501);
    t.send(CLIENT, ABI.op.FALLBACK, { arg: ABI.fb.POLICY, cid: 1n << 60n });
    expect(t.counters.fallbackReasons.get('policy')).toBe(1 << 20);
  });
});

describe('core CA: a claim holds only with the socket it is about', () => {
  /** Another process of the same user: it holds no listener and accepted nothing. */
  const bystander = (t: ReturnType<typeof setup>) => {
    const BYSTANDER = 9;
    t.core.processOpened(BYSTANDER, { pid: 900, uid: 0 });
    t.send(BYSTANDER, ABI.op.HELLO, { name: 'bystander' });
    return BYSTANDER;
  };
  /** The kernel's word on fds the test makes up, over the usual fake sockets. */
  const withSockets = (t: ReturnType<typeof setup>, extra: Record<number, TcpSocketIdentity>) => {
    for (const [fd, id] of Object.entries(extra)) t.extraSockets.set(Number(fd), id);
  };

  it('gives a waiting connection to nobody who names its ports without its accepted socket', () => {
    const warnings: string[] = [];
    const logger = { ...createLogger({ level: 'error', component: 'test' }), warn: (msg: string) => { warnings.push(msg); } };
    const t = setup({}, logger);
    const { cid } = t.connect(44001);
    const b = bystander(t);
    const elsewhere = { family: 4 as const, address: '127.0.0.2', port: 44001, scopeId: 0 };
    withSockets(t, {
      8_000_001: { local: addr(5000), remote: elsewhere, listening: false, inAgentNetns: true }, // same ports, other client
      8_000_002: { local: addr(5000), remote: addr(44001), listening: false, inAgentNetns: false }, // made in its own netns
      8_000_003: { local: addr(44001), remote: null, listening: false, inAgentNetns: null }, // not connected
    });
    const attempts: Array<Partial<CtlRequest>> = [
      { sid: t.listenSid, local: addr(5000), remote: addr(44001) }, // the attack as it was: ports only
      { sid: t.listenSid, local: addr(5000), remote: addr(44001), fd: 8_000_001 },
      { sid: t.listenSid, local: addr(5000), remote: addr(44001), fd: 8_000_002 },
      { sid: t.listenSid, local: addr(5000), remote: addr(44001), fd: 8_000_003 },
    ];
    for (const fields of attempts) {
      const rep = t.send(b, ABI.op.ACCEPT, fields)!;
      expect(rep).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.UNVERIFIED });
      expect(rep.cid ?? 0n).toBe(0n);
    }
    // A sweep of client ports, as /proc/net/tcp would feed it: nothing taken, nothing learnt.
    for (let port = 44000; port < 44100; port++) {
      expect(t.send(b, ABI.op.ACCEPT, { sid: t.listenSid, local: addr(5000), remote: addr(port) })!.event).toBe(ABI.ev.FALLBACK);
    }
    expect(t.replies.filter((r) => r.client === b && r.fds?.length)).toEqual([]);
    expect(Object.fromEntries(t.counters.refusals)).toEqual({ 'accept-unproven': 102, 'accept-not-party': 1, 'foreign-netns': 1 });
    // The first refusals are logged, with who; the sweep's rest only counted.
    expect(warnings.filter((w) => w.startsWith('refused: '))).toHaveLength(20);
    expect(warnings.filter((w) => w.startsWith('further refusals'))).toHaveLength(1);
    // The real server still gets its client; the client's socket, held since its CONNECT, is
    // let go once (and the sockets the requests passed, each once).
    expect(t.closed).not.toContain(clientFd(44001));
    expect(t.accept(44001)).toMatchObject({ event: ABI.ev.CONNECT_ESTABLISHED, cid });
    expect(t.core.pendingCount).toBe(0);
    expect(t.closed.filter((fd) => fd === clientFd(44001))).toHaveLength(1);
    expect(t.closed.filter((fd) => fd === acceptedFd(44001))).toHaveLength(1);
  });

  it('takes the other end of the rendezvous when the kernel cannot say its namespace', () => {
    const t = setup();
    const { cid } = t.connect(44201);
    // No CAP_NET_ADMIN and no tcp_diag: inAgentNetns null for both ends.
    withSockets(t, {
      [clientFd(44201)]: { local: addr(44201), remote: addr(5000), listening: false, inAgentNetns: null },
      8_000_030: { local: addr(5000), remote: addr(44201), listening: false, inAgentNetns: null },
    });
    expect(t.send(SERVER, ABI.op.ACCEPT, { sid: t.listenSid, fd: 8_000_030 })).toMatchObject({ event: ABI.ev.CONNECT_ESTABLISHED, cid });
    expect(t.counters.refusals.size).toBe(0);
  });

  it('keys a connection from an unbound socket by the port the kernel picked at the rendezvous, read from the socket', () => {
    const t = setup();
    const read: number[] = [];
    const kernelSays = t.core.socketOf;
    t.core.endpointsOf = (fd) => { read.push(fd); return kernelSays(fd); };
    // Three clients connect from unbound sockets (port 0); the kernel picks their ports when
    // they make their rendezvous.
    const unbound = (fd: number) => withSockets(t, { [fd]: { local: addr(0), remote: null, listening: false, inAgentNetns: true } });
    const connected = (fd: number, port: number) => withSockets(t, { [fd]: { local: addr(port), remote: addr(5000), listening: false, inAgentNetns: true } });
    const fds = [8_000_101, 8_000_102, 8_000_103];
    const conns = fds.map((fd) => {
      unbound(fd);
      const rep = t.send(CLIENT, ABI.op.CONNECT, { sid: 0, local: addr(0), remote: addr(5000), fd })!;
      expect(rep.event).toBe(ABI.ev.CONNECT_RESPONSE);
      return { sid: rep.sid!, cid: rep.cid! };
    });
    expect(t.core.pendingCount).toBe(3);
    fds.forEach((fd, i) => connected(fd, 45001 + i));
    // The first one's RTU note comes first: keyed by its socket's port, not by the note.
    t.send(CLIENT, ABI.op.ESTABLISH, { sid: conns[0]!.sid, cid: conns[0]!.cid });
    expect(read).toEqual([fds[0]]);
    expect(t.accept(45001)).toMatchObject({ event: ABI.ev.CONNECT_ESTABLISHED, cid: conns[0]!.cid });
    // The third's ACCEPT is read before any note of the others: the agent reads the ports of
    // the sockets it holds for that listener, and the right one is claimed.
    expect(t.accept(45003)).toMatchObject({ event: ABI.ev.CONNECT_ESTABLISHED, cid: conns[2]!.cid });
    // The second was keyed on the way: its ACCEPT and RTU need no more reads of its socket.
    const reads = read.length;
    expect(t.accept(45002)).toMatchObject({ event: ABI.ev.CONNECT_ESTABLISHED, cid: conns[1]!.cid });
    t.send(CLIENT, ABI.op.ESTABLISH, { sid: conns[1]!.sid, cid: conns[1]!.cid });
    // sameRendezvous checks the claim against the addresses keyByPort read: no read at all
    expect(read.length).toBe(reads);
    expect(t.core.pendingCount).toBe(0);
    // A kernel client's ACCEPT while one still has no port is not answered from the ports alone.
    unbound(8_000_104);
    t.send(CLIENT, ABI.op.CONNECT, { sid: 0, local: addr(0), remote: addr(5000), fd: 8_000_104 });
    const full: number[] = [];
    t.core.socketOf = (fd) => { full.push(fd); return kernelSays(fd); };
    expect(t.send(SERVER, ABI.op.ACCEPT, { sid: t.listenSid, local: addr(5000), remote: addr(45009), fd: acceptedFd(45009) })!.event)
      .toBe(ABI.ev.FALLBACK);
    expect(full).toContain(acceptedFd(45009));
    expect(t.core.pendingCount).toBe(1);
  });

  it("reads only the client socket's addresses at ACCEPT once its CONNECT proved its namespace, and all of it otherwise", () => {
    const t = setup();
    const full: number[] = [];
    const light: number[] = [];
    const kernelSays = t.core.socketOf;
    t.core.socketOf = (fd) => { full.push(fd); return kernelSays(fd); };
    t.core.endpointsOf = (fd) => { light.push(fd); return kernelSays(fd); };
    const proven = t.connect(44301); // the fake kernel: in the agent's namespace
    expect(full).toEqual([clientFd(44301)]);
    expect(t.accept(44301)).toMatchObject({ event: ABI.ev.CONNECT_ESTABLISHED, cid: proven.cid });
    expect(full).toEqual([clientFd(44301), acceptedFd(44301)]); // the client's socket not again...
    expect(light).toEqual([clientFd(44301)]); // ...only its addresses
    // Unknown at CONNECT (a kernel without namespace cookies, the socket not yet connected):
    // the ACCEPT asks the kernel again, and a socket of another namespace proves nothing.
    withSockets(t, { [clientFd(44302)]: { local: addr(44302), remote: addr(5000), listening: false, inAgentNetns: null } });
    t.connect(44302);
    full.length = 0;
    withSockets(t, { [clientFd(44302)]: { local: addr(44302), remote: addr(5000), listening: false, inAgentNetns: false } });
    expect(t.accept(44302).event).not.toBe(ABI.ev.CONNECT_ESTABLISHED);
    expect(full).toContain(clientFd(44302));
    expect(light).toEqual([clientFd(44301)]);
  });

  it('registers a listener only with a socket bound at that address', () => {
    const t = setup();
    const b = bystander(t);
    // Each request passes its own copy of a socket (the agent closes each once it is done).
    const at6001 = { local: addr(6001), remote: null, listening: false, inAgentNetns: null };
    withSockets(t, { 8_000_010: at6001, 8_000_011: at6001 });
    for (const fields of [{}, { fd: 8_000_010 }, { fd: clientFd(6000) }]) {
      const sid = t.send(b, ABI.op.OPEN)!.sid!;
      const rep = t.send(b, ABI.op.LISTEN, { sid, local: addr(6000), arg: 16, ...fields })!;
      expect(rep).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.UNVERIFIED });
    }
    expect(t.core.listeners.find(4, '127.0.0.1', 6000)).toBeUndefined();
    expect(t.counters.refusals.get('listen-unproven')).toBe(3);
    const sid = t.send(b, ABI.op.OPEN)!.sid!;
    expect(t.send(b, ABI.op.LISTEN, { sid, local: addr(6001), arg: 16, fd: 8_000_011 })!.event).toBe(ABI.ev.ACK);
  });

  it('keys a connection by the port its client\'s socket is bound to, and never swaps a waiting one', () => {
    const t = setup();
    const b = bystander(t);
    for (const fields of [{}, { fd: clientFd(44101) }, { fd: LISTEN_FD }]) {
      const rep = t.send(b, ABI.op.CONNECT, { local: addr(44100), remote: addr(5000), ...fields })!;
      expect(rep).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.UNVERIFIED });
    }
    expect(t.counters.refusals.get('connect-unproven')).toBe(3);
    // Bound at that port, but in a network namespace of its own: it would only squat the key.
    withSockets(t, { 8_000_021: { local: addr(44100), remote: null, listening: false, inAgentNetns: false } });
    expect(t.send(b, ABI.op.CONNECT, { local: addr(44100), remote: addr(5000), fd: 8_000_021 })!)
      .toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.UNVERIFIED });
    expect(t.counters.refusals.get('foreign-netns')).toBe(1);
    const { cid } = t.connect(44100);
    // A second CONNECT on the same rendezvous (a socket bound to the same port elsewhere).
    withSockets(t, { 8_000_020: { local: addr(44100), remote: null, listening: false, inAgentNetns: null } });
    const dup = t.send(b, ABI.op.CONNECT, { local: addr(44100), remote: addr(5000), fd: 8_000_020 })!;
    expect(dup).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.UNVERIFIED });
    expect(t.counters.refusals.get('connect-duplicate')).toBe(1);
    expect(t.accept(44100)).toMatchObject({ event: ABI.ev.CONNECT_ESTABLISHED, cid });
    expect(t.counters.fallbackReasons.get('unverified')).toBe(5);
  });
});

describe('core CA: what one process can make the agent keep', () => {
  it('counts FALLBACK notes only under the reasons the ABI defines, and drops a process that makes one up', () => {
    const t = setup();
    t.send(CLIENT, ABI.op.FALLBACK, { arg: ABI.fb.SHORT_LIVED, cid: 3n });
    expect(t.counters.fallbackReasons.get('short-lived')).toBe(3);
    for (const reason of [0, 99, 0xffffffff]) {
      const p = 10 + reason % 7;
      t.core.processOpened(p, { pid: 1000 + p, uid: 0 });
      t.send(p, ABI.op.HELLO, { name: 'liar' });
      t.send(p, ABI.op.FALLBACK, { arg: reason });
      expect(t.dropped).toContain(p);
    }
    expect([...t.counters.fallbackReasons.keys()]).toEqual(['short-lived']);
  });

  it('keeps at most MAX_PROGRAMS names apart, printable', () => {
    const t = setup();
    for (let p = 100; p < 100 + MAX_PROGRAMS + 50; p++) {
      t.core.processOpened(p, { pid: p, uid: 0 });
      t.send(p, ABI.op.HELLO, { name: `prog-${p}` });
      t.send(p, ABI.op.FALLBACK, { arg: ABI.fb.RESOURCES });
    }
    expect(t.counters.programs.size).toBe(MAX_PROGRAMS + 1);
    expect(t.counters.programs.get(OTHER_PROGRAMS)!.fallback.resources).toBeGreaterThanOrEqual(50);
    t.core.processOpened(999, { pid: 999, uid: 0 });
    t.send(999, ABI.op.HELLO, { name: 'evil\u001b[2J\nname' });
    expect(t.core.processes.get(999)!.program).toBe('evil?[2J?name');
  });

  it('never hands out a SID that is still in use after the numbers wrap', () => {
    const t = setup();
    const live = t.send(CLIENT, ABI.op.OPEN)!.sid!; // a low SID that stays open
    (t.core as unknown as { nextSid: number }).nextSid = 0xfffffffe;
    const sids = [0, 1, 2].map(() => t.send(CLIENT, ABI.op.OPEN)!.sid!);
    expect(sids[0]).toBe(0xfffffffe);
    expect(sids).not.toContain(live);
    expect(sids).not.toContain(t.listenSid);
    expect(new Set([...sids, live, t.listenSid]).size).toBe(5);
  });
});

describe('core CA: sockets per process', () => {
  it('lets no process hold more than VTOE_MAX_PROCESS_SOCKETS; the others still get theirs', () => {
    const t = setup({ maxProcessSockets: 3 });
    const conns = [45001, 45002, 45003].map((port) => {
      const c = t.connect(port);
      t.send(CLIENT, ABI.op.ESTABLISH, { sid: c.sid, cid: c.cid });
      return c;
    });
    const over = t.send(CLIENT, ABI.op.CONNECT, { sid: 0, local: addr(45004), remote: addr(5000), fd: clientFd(45004) })!;
    expect(over).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.PROCESS_LIMIT });
    expect(t.send(CLIENT, ABI.op.OPEN)).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.PROCESS_LIMIT });
    // Another process is not held back by this one.
    const OTHER = 3;
    t.core.processOpened(OTHER, { pid: 300, uid: 0 });
    t.send(OTHER, ABI.op.HELLO, { name: 'other' });
    expect(t.send(OTHER, ABI.op.CONNECT, { sid: 0, local: addr(45005), remote: addr(5000), fd: clientFd(45005) })!.event)
      .toBe(ABI.ev.CONNECT_RESPONSE);
    // The server holds its listener and two accepted ends: the third is carried by the agent
    // over the server's kernel socket instead (a late fallback), nothing is stranded.
    expect(t.accept(45001).event).toBe(ABI.ev.CONNECT_ESTABLISHED);
    expect(t.accept(45002).event).toBe(ABI.ev.CONNECT_ESTABLISHED);
    expect(t.accept(45003)).toMatchObject({ event: ABI.ev.FALLBACK, reason: ABI.fb.PROCESS_LIMIT });
    expect(t.links[2]!.relayedOver).toBe(clientFd(45003));
    expect(t.core.connections.get(conns[2]!.cid)!.relayed).toBe(true);
    expect(t.counters.fallbackReasons.get('process-limit')).toBe(3);
    // Once it closes one, it may have a new one.
    t.send(CLIENT, ABI.op.CLOSE, { sid: conns[0]!.sid });
    expect(t.send(CLIENT, ABI.op.CONNECT, { sid: 0, local: addr(45006), remote: addr(5000), fd: clientFd(45006) })!.event)
      .toBe(ABI.ev.CONNECT_RESPONSE);
  });
});
