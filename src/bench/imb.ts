// Intel MPI Benchmarks (IMB-MPI1) output: one table per benchmark. Pure: no I/O.
import type { SeriesSet, SizePoint } from './series.js';

/** The benchmarks `vtoe bench` runs, in IMB's names. */
export const IMB_BENCHMARKS = ['PingPong', 'PingPing', 'Sendrecv', 'Exchange', 'Allreduce'] as const;
export type ImbBenchmark = (typeof IMB_BENCHMARKS)[number];

export interface ImbResult {
  series: SeriesSet;
  /** Ranks each benchmark ran with (#processes). */
  processes: Record<string, number>;
}

/**
 * Reads every "# Benchmarking NAME" section. The time column is t[usec] (PingPong, PingPing) or
 * t_avg[usec] (Sendrecv, Exchange, collectives); Mbytes/sec where the table has it.
 */
export function parseImbOutput(text: string): ImbResult {
  const series: SeriesSet = {};
  const processes: Record<string, number> = {};
  let name: string | null = null;
  let columns: string[] | null = null;
  for (const line of text.split('\n')) {
    const bench = /^# Benchmarking (\S+)/.exec(line);
    if (bench) {
      name = bench[1]!;
      columns = null;
      continue;
    }
    const procs = /^# #processes = (\d+)/.exec(line);
    if (procs && name) {
      processes[name] = Number(procs[1]);
      continue;
    }
    const trimmed = line.trim();
    if (name && trimmed.startsWith('#bytes')) {
      columns = trimmed.split(/\s+/);
      continue;
    }
    if (!name || !columns || !/^\d/.test(trimmed)) continue;
    const cells = trimmed.split(/\s+/).map(Number);
    if (cells.length !== columns.length || cells.some((c) => !Number.isFinite(c))) continue;
    const at = (col: string) => columns!.indexOf(col);
    const t = at('t[usec]') >= 0 ? at('t[usec]') : at('t_avg[usec]');
    if (t < 0) continue;
    const point: SizePoint = { bytes: cells[at('#bytes')]!, usec: cells[t]! };
    if (at('Mbytes/sec') >= 0) point.mbPerSec = cells[at('Mbytes/sec')]!;
    (series[name] ??= []).push(point);
  }
  return { series, processes };
}
