// What a site installs around the agent, checked with the tools that will read it: the systemd
// units with systemd-analyze verify, the environment modules loaded by Lmod (Lua and Tcl), the
// shell lines with sh, and the agent's readiness and stop messages to a service manager.
import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { manPages } from '../src/man-pages.js';
import { repoRoot } from './helpers/cc.js';
import { startProc } from './helpers/proc.js';

const exec = promisify(execFile);
const vtoeJs = join(repoRoot, 'bin', 'vtoe.js');
const dir = mkdtempSync(join(tmpdir(), 'vtoe-deploy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const vtoe = async (...args: string[]) => (await exec(process.execPath, [vtoeJs, ...args])).stdout;
const found = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const LMOD = '/usr/share/lmod/lmod/libexec/lmod';
const haveLmod = spawnSync('test', ['-x', LMOD]).status === 0;

describe.skipIf(!found('systemd-analyze'))('vtoe unit (skipped without systemd-analyze: apt-get install systemd)', () => {
  async function verify(unitDir: string, file: string, user: boolean): Promise<{ code: number; stderr: string }> {
    const runtime = join(dir, 'runtime');
    mkdirSync(runtime, { recursive: true, mode: 0o700 });
    // Documentation=man:vtoe(1) is checked too: the pages as npm installs them
    const manDir = join(dir, 'man');
    for (const page of manPages('0.0.0-test')) {
      mkdirSync(join(manDir, `man${page.section}`), { recursive: true });
      writeFileSync(join(manDir, `man${page.section}`, `${page.name}.${page.section}`), page.text);
    }
    const r = spawnSync('systemd-analyze', [...(user ? ['--user'] : []), 'verify', join(unitDir, file)],
      { env: { ...process.env, XDG_RUNTIME_DIR: runtime, MANPATH: manDir }, encoding: 'utf8' });
    return { code: r.status ?? -1, stderr: r.stderr };
  }

  it("the user's unit verifies clean: Type=notify, this installation's vtoe, a bounded stop", async () => {
    const unitDir = join(dir, 'user');
    mkdirSync(unitDir);
    const text = await vtoe('unit');
    expect(text).toMatch(/^Type=notify$/m);
    expect(text).toContain(`ExecStart=${join(repoRoot, 'bin', 'vtoe')} agent\n`);
    expect(text).toMatch(/^TimeoutStopSec=15$/m); // VTOE_DRAIN_MS 5000 + 10 s
    writeFileSync(join(unitDir, 'vtoe.service'), text);
    expect(await verify(unitDir, 'vtoe.service', true)).toEqual({ code: 0, stderr: '' });
  });

  it('the system template verifies clean for a user, and runs the agent as that user', async () => {
    const unitDir = join(dir, 'system');
    mkdirSync(unitDir);
    const text = await vtoe('unit', '--system');
    expect(text).toMatch(/^User=%i$/m);
    expect(text).toMatch(/^Environment=VTOE_AGENT_SOCKET=\/run\/vtoe-%i\/agent\.sock$/m);
    writeFileSync(join(unitDir, 'vtoe@.service'), text);
    copyFileSync(join(unitDir, 'vtoe@.service'), join(unitDir, `vtoe@${userInfo().username}.service`));
    expect(await verify(unitDir, `vtoe@${userInfo().username}.service`, false)).toEqual({ code: 0, stderr: '' });
  });

  it('a broken unit fails the same check (the check can fail)', async () => {
    const unitDir = join(dir, 'broken');
    mkdirSync(unitDir);
    writeFileSync(join(unitDir, 'vtoe.service'), (await vtoe('unit')).replace(/^ExecStart=.*$/m, 'ExecStart=/nonexistent/vtoe agent'));
    expect((await verify(unitDir, 'vtoe.service', true)).code).not.toBe(0);
  });
});

describe('vtoe env', () => {
  it('gives shell lines that put the shim first in LD_PRELOAD, keep the other preloads and name the agent', async () => {
    const socket = join(dir, 'agent.sock');
    const r = spawnSync('sh', ['-c', `eval "$(${process.execPath} ${vtoeJs} env)"; printf '%s|%s' "$LD_PRELOAD" "$VTOE_AGENT_SOCKET"`],
      { env: { ...process.env, LD_PRELOAD: 'libc.so.6', VTOE_AGENT_SOCKET: socket }, encoding: 'utf8' });
    expect(r.stdout).toBe(`${join(repoRoot, 'preload', 'libvtoe.so')}:libc.so.6|${socket}`);
    expect((await vtoe('env', '--system')).split('\n')[1]).toBe(`export VTOE_AGENT_SOCKET='/run/vtoe-${userInfo().username}/agent.sock'`);
  });

  it.skipIf(!haveLmod)('writes modules that Lmod loads, Lua and Tcl, naming the agent (skipped without Lmod: apt-get install lmod)', async () => {
    const uid = userInfo().uid;
    const cases = [
      // [module kind, --system, XDG_RUNTIME_DIR, the socket the job is given]
      ['lua', false, '', `/tmp/vtoe-${uid}/agent.sock`],
      ['lua', false, '/run/user/4242', '/run/user/4242/vtoe/agent.sock'],
      ['tcl', false, '', `/tmp/vtoe-${uid}/agent.sock`],
      ['tcl', false, '/run/user/4242', '/run/user/4242/vtoe/agent.sock'],
      ['lua', true, '/run/user/4242', '/run/vtoe-alice/agent.sock'],
      ['tcl', true, '', '/run/vtoe-alice/agent.sock'],
    ] as const;
    for (const [kind, system, runtime, socket] of cases) {
      const what = `${kind}${system ? ' --system' : ''} XDG_RUNTIME_DIR=${runtime}`;
      const modDir = mkdtempSync(join(dir, 'modules-'));
      mkdirSync(join(modDir, 'vtoe'));
      const text = await vtoe('env', '--module', kind, ...(system ? ['--system'] : []));
      writeFileSync(join(modDir, 'vtoe', kind === 'lua' ? '0.1.0.lua' : '0.1.0'), text);
      const r = spawnSync(LMOD, ['sh', 'load', 'vtoe'], {
        env: { ...process.env, MODULEPATH: modDir, USER: 'alice', LD_PRELOAD: 'libc.so.6', XDG_RUNTIME_DIR: runtime },
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr, what).not.toMatch(/error/i);
      expect(r.stdout, what).toContain(`LD_PRELOAD=${join(repoRoot, 'preload', 'libvtoe.so')}:libc.so.6;`);
      expect(r.stdout, what).toContain(`PATH=${join(repoRoot, 'bin')}:`);
      expect(r.stdout, what).toContain(`VTOE_AGENT_SOCKET=${socket};`);
    }
  });
});

// A service manager's side of the readiness protocol: a Unix datagram socket, printing each
// message it receives on one line (newlines as |).
const PY_NOTIFY = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("BOUND", flush=True)
while True:
    print("MSG " + s.recv(4096).decode().replace("\\n", "|"), flush=True)
`;

describe('vtoe agent under a service manager (Type=notify)', () => {
  it('says READY=1 with its pid once it listens, and STOPPING=1 on SIGTERM, then exits 0', async () => {
    const notify = join(dir, 'notify.sock');
    const manager = startProc('python3', ['-c', PY_NOTIFY, notify], process.env);
    await manager.waitLine(/^BOUND$/);
    const socket = join(dir, 'svc', 'agent.sock');
    const agent = startProc(join(repoRoot, 'bin', 'vtoe'), ['agent', '--socket', socket], { ...process.env, NOTIFY_SOCKET: notify });
    const [, ready] = await manager.waitLine(/^MSG (READY=1.*)$/, 30_000);
    expect(ready).toBe(`READY=1|MAINPID=${agent.child.pid}|STATUS=listening on ${socket}`);
    // ready means ready: the CLI gets an answer at once
    expect(await vtoe('stats', '--json', '--socket', socket)).toMatch(/"offloaded": 0/);
    agent.kill('SIGTERM');
    const [, stopping] = await manager.waitLine(/^MSG (STOPPING=1.*)$/, 30_000);
    expect(stopping).toMatch(/^STOPPING=1\|STATUS=draining for at most 5000 ms$/);
    expect((await agent.exited).code).toBe(0);
    manager.kill('SIGKILL');
  }, 60_000);
});
