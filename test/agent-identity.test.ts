// Who may stand at the agent's socket path: the agent refuses a directory someone else can put
// a socket in, its admin socket is never open to others, and the shim talks only to an agent
// of its own user (or root's), so a squatter's fake agent gets nothing.
import { chmodSync, chownSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { offloadEnv } from '../src/agent/preload-env.js';
import { adminSocketPath, defaultAgentSocket, resolveConfig } from '../src/config.js';
import { startProc, type Proc } from './helpers/proc.js';
import { scratchPerTest } from './helpers/scratch.js';
import { pyListener } from './helpers/py-snippets.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const scratch = scratchPerTest();

/** An echo server and a client that sends `hello` through it, started in `env`; the client, once it got its echo. */
async function helloThrough(dir: string, env: NodeJS.ProcessEnv): Promise<Proc> {
  writeFileSync(join(dir, 'echo.py'), `import socket, sys
${pyListener(1)}c, _ = l.accept()
c.sendall(c.recv(100))
c.close()
`);
  writeFileSync(join(dir, 'client.py'), `import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.sendall(b'hello')
print('GOT', s.recv(100).decode(), flush=True)
`);
  const server = startProc('python3', [join(dir, 'echo.py')], env);
  const port = (await server.waitLine(/^(\d+)$/))[1]!;
  const client = startProc('python3', [join(dir, 'client.py'), port], env);
  expect((await client.waitLine(/^GOT (.*)$/))[1]).toBe('hello');
  return client;
}

if (!isRoot) console.warn('agent-identity: the other-user cases need root (chown, setuid); skipped here');

describe('the agent\'s socket directory', () => {
  it('is refused when others may write to it without the sticky bit', async () => {
    const dir = scratch.tempDir('vtoe-ident-');
    chmodSync(dir, 0o777);
    await expect(Agent.start({ socketPath: join(dir, 'agent.sock') })).rejects.toMatchObject({
      code: 'EACCES', message: expect.stringMatching(/writable by others.*chmod go-w/),
    });
    chmodSync(dir, 0o1777); // as /tmp is: nobody can remove or replace what the agent puts there
    const agent = scratch.track(await Agent.start({ socketPath: join(dir, 'agent.sock') }));
    expect(statSync(agent.socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(adminSocketPath(agent.socketPath)).mode & 0o777).toBe(0o600);
  });

  it.skipIf(!isRoot)('is refused when another user made it (a squatter at /tmp/vtoe-<uid>)', async () => {
    const dir = scratch.tempDir('vtoe-ident-');
    const squatted = join(dir, 'vtoe-0');
    mkdirSync(squatted, { mode: 0o700 });
    chownSync(squatted, NOBODY, NOBODY);
    await expect(Agent.start({ socketPath: join(squatted, 'agent.sock') })).rejects.toMatchObject({
      code: 'EACCES', message: expect.stringMatching(/belongs to uid 65534, not to you/),
    });
  });
});

describe('the shim', () => {
  it.skipIf(!isRoot)('talks to no agent of another user: a fake agent gets no HELLO, the program kernel TCP', async () => {
    const dir = scratch.tempDir('vtoe-ident-');
    chmodSync(dir, 0o755);
    const squatted = join(dir, 'vtoe-0'); // made by the other user before the victim's agent
    mkdirSync(squatted, { mode: 0o755 });
    chownSync(squatted, NOBODY, NOBODY);
    const path = join(squatted, 'agent.sock');
    // Another user's "agent": it listens where the victim's shim looks and reports what it hears.
    writeFileSync(join(dir, 'fake-agent.py'), `import os, socket, sys
os.setgid(${NOBODY}); os.setuid(${NOBODY})
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(8)
print('LISTENING', flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        m = c.recv(200)
        print('HEARD', len(m), flush=True)
    except socket.timeout:
        print('SILENCE', flush=True)
`);
    const fake = startProc('python3', [join(dir, 'fake-agent.py'), path], { PATH: process.env.PATH });
    await fake.waitLine(/^LISTENING$/);
    const client = await helloThrough(dir, { ...offloadEnv(path), VTOE_LOG_LEVEL: 'warn' });
    expect(await client.exited).toEqual({ code: 0, signal: null });
    expect(client.stderr()).toMatch(/runs as uid 65534, not as this process's uid 0: not trusted/);
    // Each process connected and hung up at once: the fake agent heard no message at all.
    await fake.waitLine(/^(HEARD|SILENCE)/);
    expect(fake.stdout()).not.toMatch(/HEARD [1-9]/);
  });
});

describe('the default socket path', () => {
  it('is in $XDG_RUNTIME_DIR when that is this user\'s directory, for the agent and the shim alike', async () => {
    const dir = scratch.tempDir('vtoe-ident-');
    const uid = process.getuid!();
    expect(defaultAgentSocket({ XDG_RUNTIME_DIR: dir })).toBe(join(dir, 'vtoe', 'agent.sock'));
    expect(defaultAgentSocket({})).toBe(`/tmp/vtoe-${uid}/agent.sock`);
    expect(defaultAgentSocket({ XDG_RUNTIME_DIR: 'relative/dir' })).toBe(`/tmp/vtoe-${uid}/agent.sock`);
    expect(defaultAgentSocket({ XDG_RUNTIME_DIR: join(dir, 'missing') })).toBe(`/tmp/vtoe-${uid}/agent.sock`);
    expect(resolveConfig({ XDG_RUNTIME_DIR: dir }).agentSocket).toBe(join(dir, 'vtoe', 'agent.sock'));

    // An agent there, and a client and server that were given only XDG_RUNTIME_DIR.
    const agent = scratch.track(await Agent.start({ config: { agentSocket: defaultAgentSocket({ XDG_RUNTIME_DIR: dir }) } }));
    expect(statSync(join(dir, 'vtoe')).mode & 0o777).toBe(0o700);
    const env = { ...offloadEnv(agent.socketPath), XDG_RUNTIME_DIR: dir };
    delete env.VTOE_AGENT_SOCKET;
    await helloThrough(dir, env);
    expect(agent.stats().offloaded).toBe(1);
  });

  it.skipIf(!isRoot)('is not in an $XDG_RUNTIME_DIR of another user (as after sudo)', () => {
    const dir = scratch.tempDir('vtoe-ident-');
    chownSync(dir, NOBODY, NOBODY);
    expect(defaultAgentSocket({ XDG_RUNTIME_DIR: dir })).toBe('/tmp/vtoe-0/agent.sock');
  });
});
