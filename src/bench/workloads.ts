// The workloads `vtoe bench` runs. Each trial starts its own process tree (asynchronously: the
// offload modes' agent runs in this process and must keep serving).
import { readFileSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { assertBuilt, toolPath } from '../paths.js';
import type { BenchWorkload, TrialContext, TrialResult } from './harness.js';
import { hpccInput, parseHpccOutput } from './hpcc.js';
import { IMB_BENCHMARKS, parseImbOutput } from './imb.js';
import { BENCH_MODES, mpiLaunch, type MpiFlavour } from './mpi-modes.js';
import { failed, runProcess } from './process.js';

export interface MpiWorkloadOptions {
  flavour: MpiFlavour;
  ranks: number;
  tcpInterface: string;
  timeoutMs: number;
}

function mpiTrial(o: MpiWorkloadOptions, ctx: TrialContext, program: string[]) {
  const launch = mpiLaunch({ flavour: o.flavour, mode: ctx.mode, ranks: o.ranks, tcpInterface: o.tcpInterface });
  return { launch, run: () => runProcess([...launch.argv, ...program], { env: { ...ctx.env, ...launch.env }, cwd: ctx.dir, timeoutMs: o.timeoutMs }) };
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
export function imbArgs(o: { ranks: number; maxLog2: number; iters?: number; seconds?: number }): string[] {
  return [...IMB_BENCHMARKS, '-msglog', `0:${o.maxLog2}`, '-npmin', String(o.ranks),
    ...(o.iters ? ['-iter', String(o.iters)] : []), ...(o.seconds ? ['-time', String(o.seconds)] : [])];
}

/** IMB-MPI1: tools/build-imb.sh builds it per MPI (not packaged by Debian), or --imb PATH. */
export function imbWorkload(o: MpiWorkloadOptions & { imb: string; maxLog2: number; iters?: number; seconds?: number }): BenchWorkload {
  return {
    name: 'imb',
    modes: BENCH_MODES,
    async run(ctx): Promise<TrialResult> {
      const { launch, run } = mpiTrial(o, ctx, [o.imb, ...imbArgs(o)]);
      const r = await run();
      const parsed = parseImbOutput(r.stdout);
      const problems = failed('IMB-MPI1', r);
      for (const b of IMB_BENCHMARKS) if (!parsed.series[b]?.length) problems.push(`IMB printed no ${b} table`);
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
