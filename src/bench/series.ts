// What every MPI-level workload yields: per benchmark, one point per message size. Pure.

export interface SizePoint {
  bytes: number;
  /** One-way latency (PingPong) or the time per call the benchmark reports, in microseconds. */
  usec: number;
  /** MB/s (10^6 bytes per second) as the benchmark reports it; absent where it has none. */
  mbPerSec?: number;
}

/** benchmark name (e.g. "PingPong") -> points in ascending size. */
export type SeriesSet = Record<string, SizePoint[]>;

/** The figure of a point that the charts use: bandwidth where there is one, else time. */
export function bandwidthOf(p: SizePoint): number | undefined {
  return p.mbPerSec !== undefined && p.bytes > 0 ? p.mbPerSec : undefined;
}
