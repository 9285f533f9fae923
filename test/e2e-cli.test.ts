// The CLI against a standing agent, as an operator uses it: `vtoe agent`, `vtoe ss`,
// `vtoe stats --json`, `vtoe run`, and an agent that survives a misbehaving process.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { offloadEnv } from '../src/agent/preload-env.js';
import { sanitizing } from '../src/sanitize.js';
import type { SocketRow } from '../src/agent/socket-rows.js';
import type { StatsSnapshot } from '../src/agent/stats.js';
import { runPingPong } from '../src/bench/pingpong.js';
import { buildC, repoRoot } from './helpers/cc.js';
import { killAll, startProc, type Proc } from './helpers/proc.js';

const vtoe = join(repoRoot, 'bin', 'vtoe.js');
const exec = promisify(execFile);
let dir: string;
let socket: string;
let agentProc: Proc;
let peer: string;
let ctlClient: string;

async function cli<T>(...args: string[]): Promise<T> {
  const { stdout } = await exec(process.execPath, [vtoe, ...args, '--socket', socket, '--json']);
  return JSON.parse(stdout) as T;
}

beforeAll(async () => {
  peer = buildC('e2e-peer', ['test/c/e2e-peer.c']);
  ctlClient = buildC('ctl-client', ['test/c/ctl-client.c']);
  dir = mkdtempSync(join(tmpdir(), 'vtoe-cli-'));
  socket = join(dir, 'agent.sock');
  agentProc = startProc(process.execPath, [vtoe, 'agent', '--socket', socket], { ...process.env, VTOE_TIMEWAIT_MS: '10' });
  await new Promise<void>((resolve, reject) => {
    const check = () => (agentProc.stderr().includes('listening on') ? resolve() : undefined);
    agentProc.child.stderr!.on('data', check);
    void agentProc.exited.then(() => reject(new Error(`agent exited: ${agentProc.stderr()}`)));
    check();
  });
});

afterAll(() => {
  killAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('vtoe agent, ss and stats', () => {
  it('shows an open offloaded connection in ss with fabric shm, ESTABLISHED and RTS', async () => {
    const holder = startProc(peer, ['hold'], offloadEnv(socket));
    const [, port] = await holder.waitLine(/^READY (\d+)$/);
    const reader = startProc(peer, ['reader', port!], offloadEnv(socket));
    await reader.waitLine(/^CONNECTED$/);
    await holder.waitLine(/^ACCEPTED$/);
    const rows = (await cli<SocketRow[]>('ss')).filter((r) => r.cid !== null);
    expect(rows).toHaveLength(2);
    for (const r of rows) {
      expect(r).toMatchObject({ fabric: 'shm', tcp: 'ESTABLISHED', cm: 'ESTABLISHED', qp: 'RTS', program: 'e2e-peer' });
    }
    expect(new Set(rows.map((r) => r.pid))).toEqual(new Set([holder.child.pid, reader.child.pid]));
    holder.kill('SIGKILL');
    reader.kill('SIGKILL');
    await Promise.all([holder.exited, reader.exited]);
  });

  it('keeps counting after the programs are gone', async () => {
    const before = await cli<StatsSnapshot>('stats');
    await runPingPong({ mode: 'pp', size: 64, iters: 500, warmup: 10, env: offloadEnv(socket) });
    const after = await cli<StatsSnapshot>('stats');
    expect(after.offloaded - before.offloaded).toBe(1);
    expect(after.bytes.sent - before.bytes.sent).toBeGreaterThanOrEqual(510 * 64 * 2);
    expect(after.processes.seen - before.processes.seen).toBe(2);
  });

  it('drops only the channel of a process that sends a malformed message', async () => {
    const before = await cli<StatsSnapshot>('stats');
    const holder = startProc(peer, ['hold'], offloadEnv(socket));
    const [, port] = await holder.waitLine(/^READY (\d+)$/);
    for (const kind of ['truncated', 'oversize', 'badmagic', 'badop', 'withfds']) {
      const { stdout } = await exec(ctlClient, [socket, kind]);
      expect(stdout, kind).toMatch(/EPROTO|err=71|EOF/);
    }
    // The listener registered before the bad clients is still served, offloaded.
    const reader = startProc(peer, ['reader', port!], offloadEnv(socket));
    await reader.waitLine(/^CONNECTED$/);
    await holder.waitLine(/^ACCEPTED$/);
    const after = await cli<StatsSnapshot>('stats');
    expect(after.offloaded - before.offloaded).toBe(1);
    expect(after.processes.protocolErrors - before.processes.protocolErrors).toBe(5);
    holder.kill('SIGKILL');
    reader.kill('SIGKILL');
  });
});

describe('vtoe run', () => {
  it('offloads a program with an embedded agent when none is running', async () => {
    const { stdout, stderr } = await exec(process.execPath, [vtoe, 'run', '--stats', '--socket', join(dir, 'none', 'agent.sock'), '--', peer, 'self']);
    expect(stdout.trim()).toBe('SELF OK');
    const stats = JSON.parse(stderr) as StatsSnapshot;
    expect(stats.offloaded).toBe(1);
    expect(stats.bytes.sent).toBeGreaterThanOrEqual(1 << 20);
  });

  it('uses the standing agent when one answers', async () => {
    const before = await cli<StatsSnapshot>('stats');
    const { stdout } = await exec(process.execPath, [vtoe, 'run', '--socket', socket, '--', peer, 'self']);
    expect(stdout.trim()).toBe('SELF OK');
    expect((await cli<StatsSnapshot>('stats')).offloaded - before.offloaded).toBe(1);
  });

  it('runs the program untouched with --mode ipoib', async () => {
    const before = await cli<StatsSnapshot>('stats');
    const { stdout } = await exec(process.execPath, [vtoe, 'run', '--mode', 'ipoib', '--socket', socket, '--', peer, 'self']);
    expect(stdout.trim()).toBe('SELF OK');
    const after = await cli<StatsSnapshot>('stats');
    expect(after.offloaded).toBe(before.offloaded);
    expect(after.processes.seen).toBe(before.processes.seen);
  });

  // bin/vtoe, as installed: `run` goes to the C launcher, which execs the program itself (so the
  // program's parent is this test) when the agent answers, and leaves the rest to the Node CLI.
  // The sanitizer stage (VTOE_SANITIZE=1) is launched by the Node CLI by design (libasan must come
  // first), so it skips these: the ordinary run has them.
  const launcherIt = it.skipIf(sanitizing);
  const launcher = join(repoRoot, 'bin', 'vtoe');
  const show = 'echo "$PPID|${LD_PRELOAD-}|${VTOE_AGENT_SOCKET-}"';
  const shown = (stdout: string) => stdout.trim().split('|');

  launcherIt('bin/vtoe run execs the program at once with the shim first in LD_PRELOAD when the agent answers', async () => {
    const env = { ...process.env, LD_PRELOAD: '/nowhere/libvtoe.so' };
    const [ppid, preload, agentSocket] = shown((await exec(launcher, ['run', '--socket', socket, '--', 'sh', '-c', show], { env })).stdout);
    expect(ppid).toBe(String(process.pid));
    expect(preload).toBe(join(repoRoot, 'preload', 'libvtoe.so')); // an old copy of the shim is replaced
    expect(agentSocket).toBe(socket);
    const before = await cli<StatsSnapshot>('stats');
    const { stdout } = await exec(launcher, ['run', '--', peer, 'self'], { env: { ...process.env, VTOE_AGENT_SOCKET: socket } });
    expect(stdout.trim()).toBe('SELF OK');
    expect((await cli<StatsSnapshot>('stats')).offloaded - before.offloaded).toBe(1);
  });

  launcherIt('bin/vtoe run --mode ipoib takes the shim out and keeps the other preloads', async () => {
    const env = { ...process.env, LD_PRELOAD: `${join(repoRoot, 'preload', 'libvtoe.so')}:libc.so.6`, VTOE_AGENT_SOCKET: socket };
    const [ppid, preload, agentSocket] = shown((await exec(launcher, ['run', '--mode', 'ipoib', '--', 'sh', '-c', show], { env })).stdout);
    expect([ppid, preload, agentSocket]).toEqual([String(process.pid), 'libc.so.6', '']);
  });

  launcherIt('bin/vtoe run with no agent answering hands over to the CLI, which embeds one', async () => {
    const none = join(dir, 'none', 'agent.sock');
    const [ppid, preload, agentSocket] = shown((await exec(launcher, ['run', '--socket', none, '--', 'sh', '-c', show])).stdout);
    expect(ppid).not.toBe(String(process.pid)); // the CLI's node process spawned it
    expect(preload).toBe(join(repoRoot, 'preload', 'libvtoe.so'));
    expect(agentSocket).toMatch(/\/run-\d+\.sock$/);
    const err = await exec(launcher, ['run', '--', '/nonexistent/program'], { env: { ...process.env, VTOE_AGENT_SOCKET: socket } })
      .catch((e: { code: number; stderr: string }) => e);
    expect(err).toMatchObject({ code: 127, stderr: 'vtoe run: /nonexistent/program: No such file or directory\n' });
  });

  it('says what to do when no agent is running', async () => {
    const err = await exec(process.execPath, [vtoe, 'stats', '--socket', join(dir, 'none', 'agent.sock')]).catch((e: { stderr: string; code: number }) => e);
    expect((err as { code: number }).code).toBe(1);
    expect((err as { stderr: string }).stderr).toMatch(/no vtoe agent at .*start one with 'vtoe agent'/);
  });
});

describe('vtoe cm and config', () => {
  it('prints the state machines as Graphviz that dot accepts', async () => {
    const { stdout } = await exec(process.execPath, [vtoe, 'cm', '--dot']);
    expect(stdout).toContain('cluster_tcp');
    expect(stdout).toContain('cluster_ib_cm');
    expect(stdout).toContain('cluster_qp');
    const child = execFile('dot', ['-Tsvg']);
    child.stdin!.end(stdout);
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(0);
  });

  it('prints every setting with its source', async () => {
    const { stdout } = await exec(process.execPath, [vtoe, 'config'], { env: { ...process.env, VTOE_RING_SIZE: '1m' } });
    expect(stdout).toMatch(/VTOE_RING_SIZE\s+1048576\s+env/);
    expect(stdout).toMatch(/VTOE_SPIN_US\s+50\s+default/);
  });

  it('prints the usage for --help and runs nothing, whatever the command', async () => {
    for (const args of [['--help'], ['-h'], ['bench', '--help'], ['run', '-h'], ['demo', '--help']]) {
      const { stdout, stderr } = await exec(process.execPath, [vtoe, ...args], { timeout: 10_000 });
      expect(stdout, args.join(' ')).toMatch(/^usage: vtoe <command>/);
      expect(stderr, args.join(' ')).toBe('');
    }
  });

  it('vtoe bench across hosts: says what is missing before it runs anything', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--hosts', 'a,b'], /--hosts needs --iface/],
      [['--hosts', 'a', '--iface', 'ib0'], /--hosts needs at least two hosts/],
      [['--hosts', 'a,b', '--iface', 'ib0', '--workloads', 'sockperf'], /only MPI workloads run .*drop sockperf/],
      [['--launcher', 'rsh'], /--launcher starts ranks on other hosts: give --hosts too/],
      [['--imb-benchmarks', 'Barrier'], /IMB benchmark 'Barrier' is unknown/],
    ];
    for (const [args, message] of cases) {
      const run = exec(process.execPath, [vtoe, 'bench', '--workloads', 'pingpong', ...args], { timeout: 10_000 });
      await expect(run, args.join(' ')).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(message) });
    }
  });
});

describe('vtoe demo (the quick start)', () => {
  it('compares offload with kernel TCP through its own agent, every connection offloaded, and leaves nothing behind', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'vtoe-demo-test-'));
    try {
      const { stdout } = await exec(process.execPath, [vtoe, 'demo', '--reps', '1'], { env: { ...process.env, TMPDIR: tmp } });
      expect(stdout).toMatch(/ping-pong/i);
      expect(stdout).toMatch(/^agent: 2 connections offloaded, 0 fell back/m);
      expect(readdirSync(tmp)).toEqual([]); // its agent's directory went with it
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);
});
