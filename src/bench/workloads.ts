// The workloads `vtoe bench` runs. Each trial starts its own process tree (asynchronously: the
// offload modes' agent runs in this process and must keep serving).
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { kernelEnv } from '../agent/preload-env.js';
import { VtoeError } from '../errors.js';
import { assertBuilt, toolPath } from '../paths.js';
import type { BenchWorkload, TrialContext, TrialResult } from './harness.js';
import { hpccInput, parseHpccOutput } from './hpcc.js';
import { IMB_BENCHMARKS, parseImbOutput, type ImbBenchmark } from './imb.js';
import {
  PERF_SYSCALL_NAMES, kernelCallFigures, parsePerfStat, parseStraceSummary, perRoundTrip, perfEvents,
  type CallCounts, type SyscallCounter,
} from './kernel-calls.js';
import { BENCH_MODES, mpiLaunch, type MpiFlavour } from './mpi-modes.js';
import { failed, onPath, runProcess } from './process.js';

export interface MpiWorkloadOptions {
  flavour: MpiFlavour;
  ranks: number;
  tcpInterface: string;
  timeoutMs: number;
  /** Across hosts: where the ranks go (the first is this host) and the launcher (mpi-modes.ts). */
  hosts?: readonly string[];
  launcher?: string;
}

/** Across hosts, what makes a rank offloaded must travel on mpirun's command line: the preload
 * and every VTOE_ setting of the trial's environment. Kernel modes forward nothing. */
export function rankEnvOf(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  if (!env.LD_PRELOAD || !env.VTOE_AGENT_SOCKET) return out;
  for (const [k, v] of Object.entries(env)) if (v !== undefined && (k === 'LD_PRELOAD' || k.startsWith('VTOE_'))) out[k] = v;
  return out;
}

export function mpiTrial(o: MpiWorkloadOptions, ctx: TrialContext, program: string[]) {
  const across = o.hosts ? { hosts: o.hosts, launcher: o.launcher, rankEnv: rankEnvOf(ctx.env) } : {};
  const launch = mpiLaunch({ flavour: o.flavour, mode: ctx.mode, ranks: o.ranks, tcpInterface: o.tcpInterface, ...across });
  // Across hosts mpirun, its launcher and daemons stay on kernel TCP; only the ranks are preloaded.
  const env = o.hosts ? kernelEnv(ctx.env) : ctx.env;
  return { launch, run: () => runProcess([...launch.argv, ...program], { env: { ...env, ...launch.env }, cwd: ctx.dir, timeoutMs: o.timeoutMs }) };
}

/** The project's MPI ping-pong (tools/bin/vtoe-mpi-pingpong.FLAVOUR): needs only the MPI. */
export function mpiPingPongWorkload(o: MpiWorkloadOptions & { maxBytes: number; iters: number }): BenchWorkload {
  return {
    name: 'pingpong',
    modes: BENCH_MODES,
    async run(ctx): Promise<TrialResult> {
      const bin = assertBuilt(toolPath(`vtoe-mpi-pingpong.${o.flavour}`));
      const { launch, run } = mpiTrial(o, ctx, [bin, String(o.maxBytes), String(o.iters)]);
      const r = await run();
      const problems = failed('the MPI ping-pong', r);
      if (!/^# checksum \d+ ok$/m.test(r.stdout)) problems.push('the ping-pong did not confirm its checksum');
      return { series: parseImbOutput(r.stdout).series, figures: {}, problems, transport: launch.transport };
    },
  };
}

/** The arguments of IMB-MPI1 for `vtoe bench`'s benchmarks: message sizes 0 and 1 .. 2^maxLog2,
 * at most `iters` repetitions per size (IMB's -iter; it has fewer for large messages, as its
 * default of 1000 does) and `seconds` per size (IMB's -time; default 10). */
export function imbArgs(o: { ranks: number; maxLog2: number; iters?: number; seconds?: number; benchmarks?: readonly ImbBenchmark[] }): string[] {
  return [...(o.benchmarks ?? IMB_BENCHMARKS), '-msglog', `0:${o.maxLog2}`, '-npmin', String(o.ranks),
    ...(o.iters ? ['-iter', String(o.iters)] : []), ...(o.seconds ? ['-time', String(o.seconds)] : [])];
}

/** IMB-MPI1: tools/build-imb.sh builds it per MPI (not packaged by Debian), or --imb PATH. */
export function imbWorkload(o: MpiWorkloadOptions & { imb: string; maxLog2: number; iters?: number; seconds?: number; benchmarks?: readonly ImbBenchmark[] }): BenchWorkload {
  return {
    name: 'imb',
    modes: BENCH_MODES,
    async run(ctx): Promise<TrialResult> {
      const { launch, run } = mpiTrial(o, ctx, [o.imb, ...imbArgs(o)]);
      const r = await run();
      const parsed = parseImbOutput(r.stdout);
      const problems = failed('IMB-MPI1', r);
      for (const b of o.benchmarks ?? IMB_BENCHMARKS) if (!parsed.series[b]?.length) problems.push(`IMB printed no ${b} table`);
      return { series: parsed.series, figures: {}, problems, transport: launch.transport };
    },
  };
}

/** The hpcc binary for an MPI: Debian's (Open MPI), or tools/build-hpcc-mpich.sh's. */
export function hpccBinary(flavour: MpiFlavour): string {
  return flavour === 'openmpi' ? 'hpcc' : toolPath('hpcc.mpich');
}

/** HPCC, with hpccinf.txt sized to this machine. */
export function hpccWorkload(o: MpiWorkloadOptions & { maxN: number }): BenchWorkload {
  return {
    name: 'hpcc',
    modes: BENCH_MODES,
    async run(ctx): Promise<TrialResult> {
      // HPL's matrix in at most a quarter of the memory, and N capped so a run stays short
      writeFileSync(join(ctx.dir, 'hpccinf.txt'), hpccInput({ ranks: o.ranks, memoryBytes: totalmem() / 4, maxN: o.maxN }));
      const { launch, run } = mpiTrial(o, ctx, [hpccBinary(o.flavour)]);
      const r = await run();
      let text = '';
      try { text = readFileSync(join(ctx.dir, 'hpccoutf.txt'), 'utf8'); } catch { /* reported below */ }
      const s = parseHpccOutput(text);
      const figures: Record<string, number> = {};
      for (const [k, v] of Object.entries(s.figures)) figures[k] = v;
      return { series: {}, figures, problems: [...failed('hpcc', r), ...s.problems], transport: launch.transport };
    },
  };
}

// ---- kernel calls per round trip ----------------------------------------------------------

/** The `syscalls` workload's two runs: N1 and N2 zero-byte round trips, per counter. Set-up and
 * teardown vary by a few hundred calls from run to run (connection set-up spins, threads), which
 * N2 - N1 divides: 50000 keeps that under 0.01 per round trip. strace stops the ranks at every
 * call (a kernel-TCP round trip takes ~250 µs under it), so it gets 20000 (~0.03). */
export const KCALLS_ROUND_TRIPS: Readonly<Record<SyscallCounter, readonly [number, number]>> = {
  perf: [1000, 51000],
  strace: [1000, 21000],
};

/** Can perf stat count this machine's system calls (tracepoint access: root, or
 * perf_event_paranoid <= -1 and a readable tracefs)? */
export async function perfCountsSyscalls(): Promise<boolean> {
  if (!onPath('perf')) return false;
  try {
    const r = await runProcess(['perf', 'stat', '-x,', '-e', 'raw_syscalls:sys_enter', '--', 'true'], { env: process.env, timeoutMs: 30_000 });
    return r.code === 0 && /^\d+,[^,]*,raw_syscalls:sys_enter,/m.test(r.stderr);
  } catch {
    return false;
  }
}

/** The counter to use: the one asked for if it works here, else perf if it can, else strace. */
export async function pickSyscallCounter(wanted?: SyscallCounter): Promise<SyscallCounter> {
  const perf = wanted !== 'strace' && await perfCountsSyscalls();
  if (wanted === 'perf' && !perf) {
    throw new VtoeError('ENOENT', 'perf stat cannot count raw_syscalls:sys_enter here: apt-get install linux-perf, and run as root or set kernel.perf_event_paranoid=-1');
  }
  if (perf) return 'perf';
  if (!onPath('strace')) throw new VtoeError('ENOENT', 'counting system calls needs perf with tracepoint access or strace: apt-get install linux-perf strace');
  return 'strace';
}

/** The PERF_SYSCALL_NAMES this kernel has a syscalls:sys_enter_NAME tracepoint for. */
function perfSyscallNames(): string[] {
  for (const dir of ['/sys/kernel/tracing/events/syscalls', '/sys/kernel/debug/tracing/events/syscalls']) {
    try {
      const have = new Set(readdirSync(dir));
      return PERF_SYSCALL_NAMES.filter((n) => have.has(`sys_enter_${n}`));
    } catch { /* the next place */ }
  }
  return []; // the total only: every call is 'other'
}

/** The command each rank runs: its counter, writing DIR/rank-R.txt, around the program. The rank
 * comes from the MPI's environment (Open MPI: OMPI_COMM_WORLD_RANK, MPICH's Hydra: PMI_RANK). */
function counted(counter: SyscallCounter, dir: string, events: string): string[] {
  const out = 'out="$0/rank-${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-pid$$}}.txt"';
  return counter === 'perf'
    ? ['sh', '-c', `${out}; ev=$1; shift; exec perf stat -x, -o "$out" -e "$ev" -- "$@"`, dir, events]
    : ['sh', '-c', `${out}; exec strace -f -c -o "$out" "$@"`, dir];
}

/**
 * Kernel calls per round trip: the project's MPI ping-pong at 0 bytes (`vtoe-mpi-pingpong 0 N`:
 * exactly N round trips, and around them MPI_Init, one barrier, the checksum and MPI_Finalize,
 * the same for any N), run twice, N1 and N2 round trips, each rank (not mpirun, its daemons or
 * the agent) under perf stat or strace; see kernel-calls.ts for the arithmetic. Two ranks,
 * whatever --ranks says. IMB's PingPong (-msglog 0:0 -iter N) is not used: it runs 0 and 1 B,
 * a warm-up of a tenth of the repetitions, and a timed trial run from which it may lower the
 * repetitions below -iter (-time), so its number of exchanges depends on the timing, which a
 * counter like strace changes.
 */
export function kernelCallsWorkload(o: MpiWorkloadOptions & { counter: SyscallCounter; roundTrips?: readonly [number, number] }): BenchWorkload {
  return {
    name: 'syscalls',
    modes: BENCH_MODES,
    async run(ctx): Promise<TrialResult> {
      const bin = assertBuilt(toolPath(`vtoe-mpi-pingpong.${o.flavour}`));
      const [n1, n2] = o.roundTrips ?? KCALLS_ROUND_TRIPS[o.counter];
      const names = o.counter === 'perf' ? perfSyscallNames() : [];
      const parse = o.counter === 'perf' ? parsePerfStat : parseStraceSummary;
      const problems: string[] = [];
      const runs: CallCounts[][] = [];
      let transport = '';
      let oneWayUs: number | undefined;
      for (const n of [n1, n2]) {
        const dir = join(ctx.dir, `round-trips-${n}`);
        mkdirSync(dir);
        const { launch, run } = mpiTrial({ ...o, ranks: 2 }, ctx, [...counted(o.counter, dir, perfEvents(names)), bin, '0', String(n)]);
        transport = launch.transport;
        const r = await run();
        problems.push(...failed(`the ping-pong under ${o.counter} (${n} round trips)`, r));
        const row = /^0 (\d+) ([\d.]+) /m.exec(r.stdout);
        if (!row || Number(row[1]) !== n) problems.push(`the ping-pong did not report ${n} round trips of 0 B`);
        else if (n === n2) oneWayUs = Number(row[2]);
        const files = readdirSync(dir).filter((f) => /^rank-\d+\.txt$/.test(f)).sort((a, b) => parseInt(a.slice(5)) - parseInt(b.slice(5)));
        if (files.length !== 2) {
          problems.push(`${o.counter} wrote ${files.length} rank counts for ${n} round trips, not 2`);
          continue;
        }
        try {
          runs.push(files.map((f) => parse(readFileSync(join(dir, f), 'utf8'))));
        } catch (err) {
          problems.push((err as Error).message);
        }
      }
      const figures = runs.length === 2 && !problems.length
        ? kernelCallFigures([0, 1].map((i) => perRoundTrip(runs[0]![i]!, runs[1]![i]!, n1, n2)), oneWayUs)
        : {};
      const how = o.counter === 'perf' ? 'perf stat (raw_syscalls:sys_enter)' : 'strace -f -c';
      return { series: {}, figures, problems, transport: `${transport}; each rank's system calls counted by ${how}, ${n1} and ${n2} round trips` };
    },
  };
}
