// Servers as they are really written, through offload: a server that forks a child per
// connection and closes its own copy (inetd, PostgreSQL's postmaster, Python's
// ForkingTCPServer) must leave nothing behind in the agent once its clients are gone.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { offloadEnv } from '../src/agent/preload-env.js';
import { have, killAll, startProc, waitStderr } from './helpers/proc.js';
import { PY_ECHO_TO_EOF, pyListener } from './helpers/py-snippets.js';

let dir: string;
let agent: Agent;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vtoe-servers-'));
  // A short TIMEWAIT, so that "nothing left" is reached within the test's time.
  // Every connection offloaded (shortBytes 0): these tests are about what becomes of offloaded
  // ones; sending short ones to kernel TCP is e2e-short-connections.test.ts's subject.
  agent = await Agent.start({ socketPath: join(dir, 'agent.sock'), config: { timewaitMs: 200, shortBytes: 0 } });
});
afterEach(() => killAll());
afterAll(async () => {
  await agent?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const FORKING_ECHO = `
import socketserver
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            d = self.request.recv(65536)
            if not d:
                break
            self.request.sendall(d)
class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True
s = Server(('127.0.0.1', 0), Echo)
print(s.server_address[1], flush=True)
s.serve_forever()
`;

// Connects n times in a row; each time 64 bytes each way, then the client closes first.
const CLIENT = `
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    c = socket.create_connection(('127.0.0.1', port))
    c.sendall(bytes([i % 256]) * 64)
    got = b''
    while len(got) < 64:
        d = c.recv(64 - len(got))
        if not d:
            sys.exit('early end of stream')
        got += d
    if got != bytes([i % 256]) * 64:
        sys.exit('wrong echo')
    c.close()
print('done', n, flush=True)
`;

describe('a forking server (accept, fork a child per connection, close the parent copy)', () => {
  it('leaves no connection in the agent once the clients have closed', async () => {
    writeFileSync(join(dir, 'forking-echo.py'), FORKING_ECHO);
    writeFileSync(join(dir, 'client.py'), CLIENT);
    const env = offloadEnv(agent.socketPath);
    const server = startProc('python3', [join(dir, 'forking-echo.py')], env);
    const port = Number((await server.waitLine(/^(\d+)$/))[1]);
    const before = agent.stats();
    const n = 40;
    const client = startProc('python3', [join(dir, 'client.py'), String(port), String(n)], env);
    await client.waitLine(/^done 40$/, 60_000);
    expect((await client.exited).code).toBe(0);
    expect(agent.stats().offloaded - before.offloaded).toBe(n);
    // Each child closed the accepted socket its parent owned: the agent must end that side
    // (it never gets a CLOSE from the owner), then free the entry after TIMEWAIT.
    await agent.until((a) => a.sockets().filter((r) => r.tcp !== 'LISTEN').length === 0, 10_000);
    expect(agent.sockets().filter((r) => r.tcp === 'LISTEN')).toHaveLength(1);
  });
});

const ECHO_SERVER = `
import socket
${pyListener(16)}while True:
    c, _ = l.accept()
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
`;

// One echo, then (on a line from stdin) 100000 more bytes through the same connection.
const HOLDING_CLIENT = `
import socket, sys
c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
c.sendall(b'a' * 64)
got = 0
while got < 64:
    got += len(c.recv(64))
print('first echo', flush=True)
sys.stdin.readline()
c.sendall(b'b' * 100000)
got = 0
while got < 100000:
    d = c.recv(65536)
    if not d:
        sys.exit('early end of stream')
    got += len(d)
print('second echo', got, flush=True)
`;

describe('the agent stopped with SIGTERM while a connection is open', () => {
  it('exits after its drain time, and the connection goes on working without it', async () => {
    writeFileSync(join(dir, 'echo-server.py'), ECHO_SERVER);
    writeFileSync(join(dir, 'holding-client.py'), HOLDING_CLIENT);
    const socketPath = join(dir, 'stopping.sock');
    const agentProc = startProc(process.execPath, [join(__dirname, '..', 'bin', 'vtoe.js'), 'agent'],
      { ...process.env, VTOE_AGENT_SOCKET: socketPath, VTOE_DRAIN_MS: '300' });
    await waitStderr(agentProc, 'listening on'); // the agent's ready line
    const env = offloadEnv(socketPath);
    const server = startProc('python3', [join(dir, 'echo-server.py')], env);
    const port = Number((await server.waitLine(/^(\d+)$/))[1]);
    const client = startProc('python3', [join(dir, 'holding-client.py'), String(port)], env);
    await client.waitLine(/^first echo$/);
    agentProc.kill('SIGTERM');
    // Before: the agent stayed until the last offloaded connection closed, without bound.
    const exit = await Promise.race([agentProc.exited, new Promise((r) => setTimeout(() => r('still running'), 20_000))]);
    expect(exit).toEqual({ code: 0, signal: null });
    client.child.stdin!.write('go\n');
    await client.waitLine(/^second echo 100000$/);
    expect((await client.exited).code).toBe(0);
  });
});

const ONE_ECHO = `
import socket, sys
c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
c.sendall(b'q' * 64)
got = 0
while got < 64:
    d = c.recv(64)
    if not d:
        sys.exit('early end of stream')
    got += len(d)
c.close()
print('echoed', flush=True)
`;

describe('a server whose agent is replaced (restart, upgrade)', () => {
  it('registers its listener with the new agent, whose clients are offloaded again', async () => {
    writeFileSync(join(dir, 'echo-server.py'), ECHO_SERVER);
    writeFileSync(join(dir, 'one-echo.py'), ONE_ECHO);
    const socketPath = join(dir, 'replaced.sock');
    const first = await Agent.start({ socketPath });
    const env = offloadEnv(socketPath);
    const server = startProc('python3', [join(dir, 'echo-server.py')], env);
    const port = Number((await server.waitLine(/^(\d+)$/))[1]);
    await first.until((a) => a.sockets().some((r) => r.tcp === 'LISTEN' && r.local.endsWith(`:${port}`)));
    await first.stop();
    const second = await Agent.start({ socketPath });
    try {
      // The first clients meet a listener the new agent does not know yet and use kernel
      // TCP; the server's next call to the agent finds the new one and registers again.
      for (let i = 0; i < 10 && second.stats().offloaded === 0; i++) {
        const client = startProc('python3', [join(dir, 'one-echo.py'), String(port)], env);
        await client.waitLine(/^echoed$/);
        expect((await client.exited).code).toBe(0);
      }
      expect(second.stats().offloaded).toBeGreaterThan(0);
      expect(second.sockets().some((r) => r.tcp === 'LISTEN' && r.local.endsWith(`:${port}`))).toBe(true);
    } finally {
      await second.stop();
    }
  });
});

// Python: accept one connection on listener l and echo it to its end, counting the bytes.
const ECHO_ONE = `c, _ = l.accept()
${PY_ECHO_TO_EOF}`;

// A listener registered with the agent, then passed to a child that cannot take offloaded
// connections (argv[1]: how), which accepts and echoes.  With "wait", the child starts only
// on a line from stdin (so a client can connect, write and close before anyone accepts), and
// only counts what it reads: an echo to a client that has closed may meet its reset, on
// kernel TCP too, once the bytes arrive in more than one piece.
const HANDING_PARENT = `
import os, socket, subprocess, sys
how = sys.argv[1]
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('127.0.0.1', 0))
l.listen(16)
env = dict(os.environ)
if how == 'no-preload':
    env.pop('LD_PRELOAD', None)
elif how == 'offload-off':
    env['VTOE_OFFLOAD'] = '0'
elif how == 'other-agent':
    env['VTOE_AGENT_SOCKET'] = env['VTOE_AGENT_SOCKET'] + '.elsewhere'
print(l.getsockname()[1], flush=True)
wait = len(sys.argv) > 2 and sys.argv[2] == 'wait'
if wait:
    sys.stdin.readline()
child = subprocess.Popen([sys.executable, '-c', '''
import socket, sys
l = socket.socket(fileno=int(sys.argv[1]))
if sys.argv[2] == 'count':
    c, _ = l.accept()
    total = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        total += len(d)
    c.close()
    print('received', total, flush=True)
    sys.exit(0)
${ECHO_ONE}c.close()
print('echoed', total, flush=True)
''', str(l.fileno()), 'count' if wait else 'echo'], pass_fds=[l.fileno()], env=env, stdout=sys.stdout)
sys.exit(child.wait())
`;

// Writes n random bytes, shuts down writing, reads the echo to the end; says whether it matched.
const STREAM_CLIENT = `
import os, socket, sys
data = os.urandom(int(sys.argv[2]))
c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
c.sendall(data)
c.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    d = c.recv(65536)
    if not d:
        break
    got += d
print('got', len(got), 'same' if bytes(got) == data else 'different', flush=True)
`;

// Connects, writes n bytes and closes at once, before any server accepts.
const FIRE_AND_FORGET = `
import socket, sys
c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
c.sendall(b'z' * int(sys.argv[2]))
c.close()
print('sent', flush=True)
`;

describe('late fallback: a listener handed to a process that takes connections on kernel TCP', () => {
  // 2 MiB is more than the small ring holds: the client's ring grows before anyone accepts,
  // and the relay reads the bulk area too (and the large one, if it came late).
  const cases = [['no-preload', 100000], ['offload-off', 100000], ['other-agent', 100000], ['no-preload', 2 << 20]] as const;
  for (const [how, size] of cases) {
    it(`echoes ${size} bytes when the accepting child has ${how}`, async () => {
      writeFileSync(join(dir, 'handing-parent.py'), HANDING_PARENT);
      writeFileSync(join(dir, 'stream-client.py'), STREAM_CLIENT);
      const env = offloadEnv(agent.socketPath);
      const before = agent.stats();
      const server = startProc('python3', [join(dir, 'handing-parent.py'), how], env);
      const port = Number((await server.waitLine(/^(\d+)$/))[1]);
      // The client is offloaded (the listener is registered); the child accepts the kernel
      // rendezvous without the shim: before, its recv blocked and the child read nothing.
      const client = startProc('python3', [join(dir, 'stream-client.py'), String(port), String(size)], env);
      await client.waitLine(new RegExp(`^got ${size} same$`), 20_000);
      await server.waitLine(new RegExp(`^echoed ${size}$`));
      const after = agent.stats();
      expect(after.offloaded - before.offloaded).toBe(1);
      expect((after.fallback.reasons['late-accept'] ?? 0) - (before.fallback.reasons['late-accept'] ?? 0)).toBe(1);
      // A bulk write moves to the bulk area, and on to the large one if the relay has not
      // begun reading 1 ms after the writer filled it.  Verbs rings have one size (the peer's
      // HCA writes into registered memory): there the writer waits for the relay instead.
      const growths = after.ringGrowths - before.ringGrowths;
      if (size > 256 * 1024 && process.env.VTOE_FABRIC !== 'verbs') expect([1, 2]).toContain(growths);
      else expect(growths).toBe(0);
    });
  }

  it('delivers what a client wrote and closed before the kernel-TCP child accepted', async () => {
    writeFileSync(join(dir, 'handing-parent.py'), HANDING_PARENT);
    writeFileSync(join(dir, 'fire-and-forget.py'), FIRE_AND_FORGET);
    const env = offloadEnv(agent.socketPath);
    const server = startProc('python3', [join(dir, 'handing-parent.py'), 'no-preload', 'wait'], env);
    const port = Number((await server.waitLine(/^(\d+)$/))[1]);
    const client = startProc('python3', [join(dir, 'fire-and-forget.py'), String(port), '65536'], env);
    await client.waitLine(/^sent$/);
    expect((await client.exited).code).toBe(0);
    server.child.stdin!.write('go\n');
    await server.waitLine(/^received 65536$/, 20_000);
  });
});

// A server at its descriptor limit: the listener is registered, then every free descriptor is
// taken but one, so accept() gets its socket and nothing more.
const FULL_SERVER = `
import os, socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('127.0.0.1', 0))
l.listen(4)
held = []
try:
    while True:
        held.append(os.open('/dev/null', os.O_RDONLY))
except OSError:
    pass
os.close(held.pop())
print(l.getsockname()[1], flush=True)
${ECHO_ONE}print('echoed', total, flush=True)
`;

describe('a server out of descriptors', () => {
  it.skipIf(!have('prlimit'))(`falls back instead of stranding an offloaded client${have('prlimit') ? '' : ' [needs prlimit (util-linux)]'}`, async () => {
    writeFileSync(join(dir, 'full-server.py'), FULL_SERVER);
    writeFileSync(join(dir, 'stream-client.py'), STREAM_CLIENT);
    const env = offloadEnv(agent.socketPath);
    // The limit is set before the program starts, as `ulimit -n` would, so the shim sees it.
    const server = startProc('prlimit', ['--nofile=64:64', '--', 'python3', join(dir, 'full-server.py')], env);
    const port = Number((await server.waitLine(/^(\d+)$/))[1]);
    const client = startProc('python3', [join(dir, 'stream-client.py'), String(port), '100000'], env);
    // Before: the server claimed the connection, its reply's descriptors did not fit, and the
    // client's reads blocked while the server read its kernel socket: nothing either way.
    await client.waitLine(/^got 100000 same$/, 20_000);
    await server.waitLine(/^echoed 100000$/);
  });
});
