// Socket buffering as programs rely on it: kernel TCP takes about 4 MiB from a writer whose
// reader is not reading (tcp_wmem's autotuning), and so does offload, whose rings grow into
// their large area while a reader lags (vtoe_abi.h, "Elastic rings"); on the verbs fabric its
// agent buffers what the peer's ring cannot take (native/verbs_conn.h, "Send staging").
// Before, a client that wrote more than the two 256 KiB rings before reading its echo hung.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { readBufferLimits } from '../src/agent/host-ca-shm.js';
import { offloadEnv } from '../src/agent/preload-env.js';
import { killAll, startProc } from './helpers/proc.js';
import { PY_ECHO_TO_EOF, pyListener } from './helpers/py-snippets.js';
import { VTOE_REGION_DATA_OFFSET } from '../src/abi.js';

let dir: string;
let agent: Agent;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vtoe-buffering-'));
  agent = await Agent.start({ socketPath: join(dir, 'agent.sock'), config: { timewaitMs: 200 } });
  writeFileSync(join(dir, 'server.py'), SERVER);
  writeFileSync(join(dir, 'client.py'), CLIENT);
});
afterEach(() => killAll());
afterAll(async () => {
  await agent?.stop();
  rmSync(dir, { recursive: true, force: true });
});

// Echoes one connection.  With 'wait' it reads nothing until a line arrives on stdin.
const SERVER = `
import socket, sys
${pyListener(1)}c, _ = l.accept()
print('accepted', flush=True)
if sys.argv[1] == 'wait':
    sys.stdin.readline()
${PY_ECHO_TO_EOF}c.close()
print('echoed', total, flush=True)
`;

// Writes all n bytes, reading nothing meanwhile, then reads the echo.  The mode says how it
// waits for room: in a blocking send, or in poll, select or epoll (level or edge triggered).
const CLIENT = `
import os, select, selectors, socket, sys
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
data = memoryview(os.urandom(n))
c = socket.create_connection(('127.0.0.1', port))
if mode == 'blocking':
    c.sendall(data)
elif mode == 'epoll-et':
    c.setblocking(False)
    ep = select.epoll()
    ep.register(c.fileno(), select.EPOLLOUT | select.EPOLLET)
    off = 0
    while off < n:
        try:
            off += c.send(data[off:off + (1 << 20)])
        except BlockingIOError:
            ep.poll()
    ep.close()
else:
    sel = {'poll': selectors.PollSelector, 'select': selectors.SelectSelector,
           'epoll': selectors.EpollSelector}[mode]()
    c.setblocking(False)
    sel.register(c, selectors.EVENT_WRITE)
    off = 0
    while off < n:
        sel.select()
        try:
            off += c.send(data[off:off + (1 << 20)])
        except BlockingIOError:
            pass
    sel.close()
print('written', n, flush=True)
c.setblocking(True)
c.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    got += d
print('got', len(got), 'same' if bytes(got) == data else 'different', flush=True)
`;

const MiB = 1 << 20;

// In the RDMA guest (test/rdma-vm.test.ts) these cases run with every connection on verbs.
const onVerbs = process.env.VTOE_FABRIC === 'verbs';
// What each case's name says when it is skipped on the other fabric.
const shmOnly = onVerbs ? ' [the shm fabric\'s elastic rings: a verbs ring is registered at one size]' : '';
const verbsOnly = onVerbs ? '' : ' [the verbs fabric: run in the RDMA guest]';
// How far a writer gets before it blocks while its reader reads nothing (prints "ahead N").
const AHEAD = fileURLToPath(new URL('../bench/write-ahead.py', import.meta.url));
// Reads nothing until a line arrives on stdin, then to the end (prints "READY port", "sank N").
const LAZY_SINK = fileURLToPath(new URL('../bench/lazy-sink.py', import.meta.url));

async function exchange(n: number, mode: string, serverWaits: boolean): Promise<void> {
  const env = offloadEnv(agent.socketPath);
  const before = agent.stats();
  const server = startProc('python3', [join(dir, 'server.py'), serverWaits ? 'wait' : 'echo'], env);
  const port = Number((await server.waitLine(/^(\d+)$/))[1]);
  const client = startProc('python3', [join(dir, 'client.py'), String(port), String(n), mode], env);
  await server.waitLine(/^accepted$/);
  if (serverWaits) {
    // The write completes only if the connection buffers it all, as TCP's does.
    await client.waitLine(new RegExp(`^written ${n}$`), 20_000);
    server.child.stdin!.write('go\n');
  }
  await client.waitLine(new RegExp(`^got ${n} same$`), 20_000);
  await server.waitLine(new RegExp(`^echoed ${n}$`));
  const after = agent.stats();
  expect(after.offloaded - before.offloaded).toBe(1);
  expect(after.fallback.total - before.fallback.total).toBe(0);
  if (onVerbs) {
    // Verbs rings are registered and keep their size: the agent's send buffer took the rest,
    // and gives its pinned chunks back once the peer has read them.
    expect(after.pinned?.staged?.peak ?? 0).toBeGreaterThan(0);
    await vi.waitFor(() => expect(agent.stats().pinned?.staged?.bytes).toBe(0), { timeout: 10_000, interval: 50 });
  } else {
    expect(after.ringGrowths - before.ringGrowths).toBeGreaterThan(0);
  }
}

describe('a writer whose reader is not reading', () => {
  it('writes 6 MiB before reading its echo (both directions buffer)', async () => {
    await exchange(6 * MiB, 'blocking', false);
  });

  for (const mode of ['blocking', 'poll', 'select', 'epoll', 'epoll-et']) {
    it(`writes 4 MiB into a server that has not read yet, waiting for room in ${mode}`, async () => {
      await exchange(4 * MiB, mode, true);
    });
  }
});

describe('SO_SNDBUF', () => {
  // how: buffers set before connecting ('set', or 'force' past the host's limits), or 'after'
  // the connection exists (once both ends have set theirs, the writer starts).
  type How = 'set' | 'force' | 'after';
  async function ahead(sndbuf: number, how: How = 'set', enough = 0, rcvbuf = 0, env = offloadEnv(agent.socketPath)): Promise<number> {
    const server = startProc('python3', [LAZY_SINK, String(rcvbuf), how], env);
    const port = Number((await server.waitLine(/^READY (\d+)$/))[1]);
    const client = startProc('python3', [AHEAD, String(port), String(sndbuf), how, ...(enough ? [String(enough)] : [])], env);
    if (how === 'after') {
      await Promise.all([server.waitLine(/^accepted \d+$/), client.waitLine(/^connected$/)]);
      client.child.stdin!.write('go\n');
    }
    const n = Number((await client.waitLine(/^ahead (\d+)$/, 30_000))[1]);
    server.child.stdin!.write('go\n');
    await server.waitLine(new RegExp(`^sank ${n}$`), 20_000); // nothing it buffered was lost
    return n;
  }

  it('a writer that set a small one blocks once a ring is full, as the kernel\'s small buffer would; without it, MiBs ahead', async () => {
    // 64 KiB: the kernel's buffer would hold 128 KiB, less than a ring (256 KiB): the ring
    // does not grow (shm), nothing is staged (verbs).
    expect(await ahead(65536)).toBeLessThanOrEqual(256 * 1024);
    expect(await ahead(0, 'set', 2 * MiB)).toBeGreaterThanOrEqual(2 * MiB);
  });

  // The rings of a connection whose ends set large buffers grow past VTOE_RING_MAX_SIZE (the
  // agent reads both sockets' sizes at CONNECT; the server's from its listener).  As root past
  // net.core.wmem_max and rmem_max (SO_*BUFFORCE), else within them.  Not on verbs: there the
  // agent's send buffer holds what the peer's ring cannot (the case below).
  it.skipIf(onVerbs)(`a writer and a reader that set 4 MiB buffers: the writer gets at least as far ahead as on kernel TCP${shmOnly}`, async () => {
    const force = process.getuid?.() === 0;
    const how = force ? 'force' : 'set';
    const before = agent.stats();
    const kernel = await ahead(4 * MiB, how, 0, 4 * MiB, {});
    const offloaded = await ahead(4 * MiB, how, 0, 4 * MiB);
    expect(agent.stats().offloaded - before.offloaded).toBe(1);
    expect(offloaded).toBeGreaterThanOrEqual(kernel);
    // 8 MiB each as the kernel keeps them: more than the configured rings hold
    if (force) expect(offloaded).toBeGreaterThan(agent.config.ringSize + agent.config.ringMaxSize);
  });

  // Sizes set once the connection exists count too: the region's large area has room for what
  // the host's limits let a program ask (net.core.wmem_max, rmem_max), and each ring fills it
  // as far as its two ends' buffers say, however late they set them.  Within the limits (no
  // FORCE): 4 MiB each where the host allows it, else the limit.
  it.skipIf(onVerbs)(`buffers set after connect() and accept(): the writer gets at least as far ahead as on kernel TCP, and no further than the rings hold without them${shmOnly}`, async () => {
    const before = agent.stats();
    const kernel = await ahead(4 * MiB, 'after', 0, 4 * MiB, {});
    const offloaded = await ahead(4 * MiB, 'after', 0, 4 * MiB);
    const plain = await ahead(0);
    expect(agent.stats().offloaded - before.offloaded).toBe(2);
    expect(offloaded).toBeGreaterThanOrEqual(kernel);
    // Ends that set nothing fill the large area only to the configured size, however large it is.
    expect(plain).toBeGreaterThanOrEqual(agent.config.ringMaxSize);
    expect(plain).toBeLessThanOrEqual(agent.config.ringSize + agent.config.ringMaxSize);
  });

  // A stay in the large area spans the power of two that holds what the buffers let it fill as
  // it moves there: a writer whose 3 MiB SO_SNDBUF makes that 6 MiB less the small area gets an
  // 8 MiB span, which a reader's 1 MiB SO_RCVBUF (2 MiB kept), raised while the writer waits,
  // then fills further.  (Raised past the span, it counts from the ring's next stay there.)
  const limits = readBufferLimits();
  it.skipIf(onVerbs || limits.wmemMax < 3 * MiB || limits.rmemMax < MiB)(`a reader that raises SO_RCVBUF while its writer waits for room lets the writer on (needs net.core.wmem_max >= 3 MiB and rmem_max >= 1 MiB)${shmOnly}`, async () => {
    const env = offloadEnv(agent.socketPath);
    const server = startProc('python3', [LAZY_SINK, String(MiB), 'raise'], env);
    const port = Number((await server.waitLine(/^READY (\d+)$/))[1]);
    // Writes until no room came back for 0.5 s ("full N"), then 1 MiB more, waiting as long as it takes.
    const client = startProc('python3', [AHEAD, String(port), String(3 * MiB), 'after', '0', String(MiB)], env);
    await Promise.all([server.waitLine(/^accepted$/), client.waitLine(/^connected$/)]);
    client.child.stdin!.write('go\n');
    const full = Number((await client.waitLine(/^full (\d+)$/, 30_000))[1]);
    expect(full).toBeLessThanOrEqual(6 * MiB); // the writer's 6 MiB kept, nothing from the reader yet
    server.child.stdin!.write('raise\n');
    await server.waitLine(/^raised \d+$/);
    const n = Number((await client.waitLine(/^ahead (\d+)$/, 30_000))[1]);
    expect(n).toBe(full + MiB);
    server.child.stdin!.write('go\n');
    await server.waitLine(new RegExp(`^sank ${n}$`), 20_000);
  });

  // Not on shm (its ring grows to the large area or not at all); root only, for SO_SNDBUFFORCE
  // (SO_SNDBUF is clamped to net.core.wmem_max, 208 KiB by default: less than a ring).
  it.skipIf(!onVerbs || process.getuid?.() !== 0)(`on verbs the send buffer holds what the kernel's would beside the ring (SO_SNDBUF doubled), no more${verbsOnly || (process.getuid?.() !== 0 ? ' [needs root, for SO_SNDBUFFORCE]' : '')}`, async () => {
    // 512 KiB asked: the kernel holds 1 MiB; the ring takes 256 KiB, the send buffer 768 KiB.
    const n = await ahead(512 * 1024, 'force');
    expect(n).toBeGreaterThan(768 * 1024);
    expect(n).toBeLessThanOrEqual(MiB);
  });
});

// Reads to the end, counting, as a receiver of large messages does.
const SINK = `
import hashlib, socket, sys
${pyListener(1)}c, _ = l.accept()
print('accepted', flush=True)
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    h.update(d)
    n += len(d)
print('sank', n, h.hexdigest(), flush=True)
`;

// Once told to, sends `count` messages of `size` bytes, each in one call (as MPI sends a large message).
const BULK_SENDER = `
import hashlib, os, socket, sys
port, size, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection(('127.0.0.1', port))
sys.stdin.readline()
h = hashlib.sha256()
for _ in range(count):
    m = os.urandom(size)
    h.update(m)
    c.sendall(m)
c.close()
print('sent', size * count, h.hexdigest(), flush=True)
`;

// Once told to, sends a file of `size` bytes with one sendfile() (which the shim copies in chunks).
const FILE_SENDER = `
import hashlib, os, socket, sys
port, size, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
data = os.urandom(size)
with open(path, 'wb') as f:
    f.write(data)
c = socket.create_connection(('127.0.0.1', port))
sys.stdin.readline()
with open(path, 'rb') as f:
    sent = c.sendfile(f)
c.close()
print('sent', sent, hashlib.sha256(data).hexdigest(), flush=True)
`;

/** Runs `script` (a sender told to start once the sink is in recv()) into SINK; what it sent,
 * checked whole at the sink, and the agent's counters before and after. */
async function bulkIntoReadingSink(script: string, source: string, args: string[]) {
  writeFileSync(join(dir, 'sink.py'), SINK);
  writeFileSync(join(dir, script), source);
  const env = offloadEnv(agent.socketPath);
  const before = agent.stats();
  const server = startProc('python3', [join(dir, 'sink.py')], env);
  const port = Number((await server.waitLine(/^(\d+)$/))[1]);
  const client = startProc('python3', [join(dir, script), String(port), ...args], env);
  await server.waitLine(/^accepted$/);
  client.child.stdin!.write('go\n'); // the reader is in recv() by now: it never stalls
  const [, n, sum] = await client.waitLine(/^sent (\d+) ([0-9a-f]{64})$/, 20_000);
  await server.waitLine(new RegExp(`^sank ${n} ${sum}$`), 20_000);
  return { sent: Number(n), before, after: agent.stats() };
}

describe('a bulk writer whose reader keeps reading', () => {
  it('moves its ring to the large area for a write of a ring\'s worth or more (through the small ring both sides copy a few lines apart)', async () => {
    const { before, after } = await bulkIntoReadingSink('bulk-sender.py', BULK_SENDER, [String(MiB), '8']);
    expect(after.offloaded - before.offloaded).toBe(1);
    // One move per message whose ring had emptied before it; a reader that kept up leaves it so.
    expect(after.ringGrowths - before.ringGrowths).toBeGreaterThan(0);
  });

  it('moves it for a sendfile() of a ring\'s worth or more too, though the shim copies the file in chunks', async () => {
    const { sent, before, after } = await bulkIntoReadingSink('file-sender.py', FILE_SENDER,
      [String(4 * MiB), join(dir, 'sent.bin')]);
    expect(sent).toBe(4 * MiB);
    expect(after.offloaded - before.offloaded).toBe(1);
    expect(after.ringGrowths - before.ringGrowths).toBeGreaterThan(0);
  });
});

// Sends `count` messages of `size` bytes, each in one call, waiting for a byte back after each;
// prints, then closes once told to.
const ACKED_SENDER = `
import hashlib, os, socket, sys
port, size, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection(('127.0.0.1', port))
h = hashlib.sha256()
for _ in range(count):
    m = os.urandom(size)
    h.update(m)
    c.sendall(m)
    assert c.recv(1) == b'k'
print('sent', size * count, h.hexdigest(), flush=True)
sys.stdin.readline()
c.close()
`;

// Acknowledges each `size`-byte message with one byte, then reads to the end.
const ACKING_SINK = `
import hashlib, socket, sys
size = int(sys.argv[1])
${pyListener(1)}c, _ = l.accept()
h, n, part = hashlib.sha256(), 0, 0
while True:
    d = c.recv(min(1 << 16, size - part))
    if not d:
        break
    h.update(d)
    n += len(d)
    part += len(d)
    if part == size:
        c.sendall(b'k')
        part = 0
print('sank', n, h.hexdigest(), flush=True)
`;

describe('a bulk writer whose reader keeps up', () => {
  // Each fresh page of a ring costs a fault in both processes (some 5 us a page in a VM), so
  // a stream that never needs the large area must not walk through all of it.
  it('touches only the bulk area: eight 1 MiB messages leave at most its pages in memory, not the large area\'s', async () => {
    writeFileSync(join(dir, 'acked-sender.py'), ACKED_SENDER);
    writeFileSync(join(dir, 'acking-sink.py'), ACKING_SINK);
    await agent.until((a) => a.core.connectionCount === 0); // ringBytes: this connection's alone
    const env = offloadEnv(agent.socketPath);
    const before = agent.stats();
    const server = startProc('python3', [join(dir, 'acking-sink.py'), String(MiB)], env);
    const port = Number((await server.waitLine(/^(\d+)$/))[1]);
    const client = startProc('python3', [join(dir, 'acked-sender.py'), String(port), String(MiB), '8'], env);
    const [, n, sum] = await client.waitLine(/^sent (\d+) ([0-9a-f]{64})$/, 20_000);
    const open = agent.stats();
    client.child.stdin!.write('close\n');
    await server.waitLine(new RegExp(`^sank ${n} ${sum}$`), 20_000);
    expect(open.ringGrowths - before.ringGrowths).toBeGreaterThan(0);
    const { ringSize, ringMaxSize } = agent.config;
    const small = VTOE_REGION_DATA_OFFSET + 2 * ringSize;
    const bulk = Math.min(ringMaxSize, 4 * ringSize);
    expect(bulk).toBeLessThan(ringMaxSize); // else this test shows nothing
    expect(open.memory.ringBytes).toBeGreaterThan(small);
    expect(open.memory.ringBytes).toBeLessThanOrEqual(small + bulk);
  });
});

// Sends `count` messages of `size` bytes, each after the echo of the one before; prints, then
// closes once told to.
const PING_SENDER = `
import socket, sys
port, size, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection(('127.0.0.1', port))
m = bytes(range(256)) * (size // 256 + 2)
for i in range(count):
    c.sendall(m[i % 256:i % 256 + size])
    got = b''
    while len(got) < size:
        got += c.recv(size - len(got))
    assert got == m[i % 256:i % 256 + size]
print('pinged', count, flush=True)
sys.stdin.readline()
c.close()
`;

describe('a ping-pong of small messages', () => {
  // Each fresh page costs a fault in both processes (some 10 us in a VM): walking the whole
  // small area cost IMB's 1-byte PingPong 0.1 us a message over its first 1000.
  it('cycles through the first pages of its small areas, not through all of them', async () => {
    writeFileSync(join(dir, 'ping-sender.py'), PING_SENDER);
    await agent.until((a) => a.core.connectionCount === 0); // ringBytes: this connection's alone
    const env = offloadEnv(agent.socketPath);
    const before = agent.stats();
    const server = startProc('python3', [join(dir, 'server.py'), 'go'], env);
    const port = Number((await server.waitLine(/^(\d+)$/))[1]);
    const size = 100, count = 3000; // 300 KB each way: more than a 256 KiB small area
    const client = startProc('python3', [join(dir, 'ping-sender.py'), String(port), String(size), String(count)], env);
    await client.waitLine(new RegExp(`^pinged ${count}$`), 30_000);
    const open = agent.stats();
    client.child.stdin!.write('close\n');
    await server.waitLine(new RegExp(`^echoed ${size * count}$`), 20_000);
    const { ringSize } = agent.config;
    expect(size * count).toBeGreaterThan(ringSize); // else this test shows nothing
    expect(open.offloaded - before.offloaded).toBe(1);
    // the header, and at most two pages of each direction's small area
    expect(open.memory.ringBytes).toBeLessThanOrEqual(VTOE_REGION_DATA_OFFSET + 2 * 2 * 4096);
  });
});
