// MPI through offload: Open MPI (TCP BTL) and MPICH (ch4:ucx over UCX's tcp transport) run
// the project's MPI ping-pong with the ranks' data connections
// offloaded under the mpi profile, and both run HPCC. Needs Debian's openmpi-bin, mpich and hpcc,
// and tools/build-hpcc-mpich.sh's HPCC for MPICH (.ci/run installs and builds them); each test
// says what is missing and is skipped without it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { offloadEnv } from '../src/agent/preload-env.js';
import type { StatsSnapshot } from '../src/agent/stats.js';
import { hpccInput, parseHpccOutput } from '../src/bench/hpcc.js';
import { hpccBinary } from '../src/bench/workloads.js';
import { repoRoot } from './helpers/cc.js';
import { have, killAll, startProc } from './helpers/proc.js';

const tool = (mpi: string) => join(repoRoot, 'tools', 'bin', `vtoe-mpi-pingpong.${mpi}`);
const missing = (cmds: string[]) => cmds.filter((c) => !have(c));
const ompiMissing = missing(['mpirun.openmpi', 'mpicc.openmpi']);
const mpichMissing = missing(['mpirun.mpich', 'mpicc.mpich']);
const hpccMissing = [...ompiMissing, ...missing(['hpcc'])];
const hpccMpich = hpccBinary('mpich');
const hpccMpichMissing = [...mpichMissing, ...(existsSync(hpccMpich) ? [] : [`${hpccMpich} (tools/build-hpcc-mpich.sh)`])];
const why = (m: string[]) => `needs ${m.join(', ')} (Debian: apt-get install openmpi-bin libopenmpi-dev mpich libmpich-dev hpcc)`;

// Open MPI refuses root without this; two ranks on a 2-core machine need no oversubscription.
const OMPI = ['--allow-run-as-root', '-np', '2', '--mca', 'btl', 'self,tcp', '--mca', 'btl_tcp_if_include', 'lo'];
// MPICH: UCX's tcp transport over lo, and the netmod even between ranks on one host.
const MPICH_ENV = { UCX_TLS: 'tcp,self', UCX_NET_DEVICES: 'lo', MPIR_CVAR_NOLOCAL: '1' };

let dir: string;
let agent: Agent;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vtoe-mpi-'));
  agent = await Agent.start({ socketPath: join(dir, 'agent.sock'), config: { profile: 'mpi' } });
  if (!ompiMissing.length || !mpichMissing.length) execFileSync('make', ['-s', '-C', join(repoRoot, 'tools')]);
});
afterEach(() => killAll());
afterAll(async () => {
  await agent?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string) {
  const p = startProc(cmd, args, { ...offloadEnv(agent.socketPath), ...env }, cwd);
  const { code } = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

// The agent knows a program by the first 15 bytes of its name, as the kernel's comm does.
const delta = (a: StatsSnapshot, b: StatsSnapshot, program: string) =>
  (b.programs[program.slice(0, 15)]?.offloaded ?? 0) - (a.programs[program.slice(0, 15)]?.offloaded ?? 0);

describe('MPI through offload (mpi profile)', () => {
  it.skipIf(ompiMissing.length)(`Open MPI's TCP BTL: the ping-pong's rank connections are offloaded${ompiMissing.length ? ` [${why(ompiMissing)}]` : ''}`, async () => {
    const before = agent.stats();
    const r = await run('mpirun.openmpi', [...OMPI, tool('openmpi'), String(1 << 20), '100'], {});
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^1048576 \d+ [\d.]+ [\d.]+$/m);
    expect(r.stdout).toMatch(/^# checksum \d+ ok$/m);
    const after = agent.stats();
    expect(delta(before, after, 'vtoe-mpi-pingpong.openmpi')).toBeGreaterThanOrEqual(1);
    // at least the 1 MiB rounds (10 repetitions, both ways) went through the rings
    expect(after.bytes.sent - before.bytes.sent).toBeGreaterThan(2 * 10 * (1 << 20));
    // mpirun itself stays on kernel TCP by policy, never by accident
    expect(after.programs['mpirun.openmpi']?.offloaded ?? 0).toBe(before.programs['mpirun.openmpi']?.offloaded ?? 0);
  });

  it.skipIf(mpichMissing.length)(`MPICH over UCX tcp: the ping-pong's rank connections are offloaded${mpichMissing.length ? ` [${why(mpichMissing)}]` : ''}`, async () => {
    const before = agent.stats();
    const r = await run('mpirun.mpich', ['-np', '2', tool('mpich'), String(1 << 20), '100'], MPICH_ENV);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^# checksum \d+ ok$/m);
    const after = agent.stats();
    expect(delta(before, after, 'vtoe-mpi-pingpong.mpich')).toBeGreaterThanOrEqual(1);
    expect(after.bytes.sent - before.bytes.sent).toBeGreaterThan(2 * 10 * (1 << 20));
  });

  async function hpcc(mpirun: string[], env: Record<string, string>, program: string) {
    const work = mkdtempSync(join(dir, 'hpcc-'));
    writeFileSync(join(work, 'hpccinf.txt'), hpccInput({ ranks: 2, memoryBytes: 2 ** 30, maxN: 1000 }));
    const before = agent.stats();
    const r = await run(mpirun[0]!, mpirun.slice(1), env, work);
    expect(r.code, r.stderr).toBe(0);
    const summary = parseHpccOutput(readFileSync(join(work, 'hpccoutf.txt'), 'utf8'));
    expect(summary.problems).toEqual([]);
    expect(summary.figures.HPL_Tflops).toBeGreaterThan(0);
    const after = agent.stats();
    expect(delta(before, after, program)).toBeGreaterThanOrEqual(1);
  }

  it.skipIf(hpccMissing.length)(`HPCC on Open MPI completes, passes its own checks, offloaded${hpccMissing.length ? ` [${why(hpccMissing)}]` : ''}`,
    () => hpcc(['mpirun.openmpi', ...OMPI, 'hpcc'], {}, 'hpcc'), 120_000);

  it.skipIf(hpccMpichMissing.length)(`HPCC on MPICH completes, passes its own checks, offloaded${hpccMpichMissing.length ? ` [${why(hpccMpichMissing)}]` : ''}`,
    () => hpcc(['mpirun.mpich', '-np', '2', hpccMpich], MPICH_ENV, 'hpcc.mpich'), 120_000);
});
