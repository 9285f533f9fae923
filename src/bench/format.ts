// The offload-vs-kernel-TCP comparison as data, its summary (medians, ratios) and its
// plain-text table. Pure: no processes, no I/O, so it can be tested with known figures.
import type { PingPongPpResult, PingPongResult, PingPongStreamResult } from './pingpong.js';
import { median } from './stats-math.js';
import { formatTable } from '../text-table.js';

export { median, percentile, percentileSorted, mean } from './stats-math.js';

export type BenchMode = 'offload' | 'ipoib';
export type Workload = 'pp' | 'stream';

/** What each mode really ran over, for every report. */
export const MODE_LABELS: Readonly<Record<BenchMode, string>> = {
  offload: 'offload (vtoe shm fabric)',
  ipoib: 'ipoib (kernel TCP over lo)',
};

export interface ComparisonParams {
  reps: number;
  ppSize: number;
  ppIters: number;
  ppWarmup: number;
  streamSize: number;
  streamSeconds: number;
}

/** The agent's counters moved by one offload-mode trial (both processes together). */
export interface AgentDelta {
  offloaded: number;
  fallbacks: number;
}

/** One run: a fresh server and client process pair, in one mode, for one workload. */
export interface TrialRecord {
  /** 0-based repetition. */
  rep: number;
  /** 0-based position of this run within its repetition. */
  position: number;
  mode: BenchMode;
  workload: Workload;
  result: PingPongResult;
  /** Offload trials only, when the caller could read the agent's counters. */
  agent?: AgentDelta;
}

export interface ModeSummary {
  mode: BenchMode;
  label: string;
  pp: {
    runs: number;
    /** Median over runs of each run's p50 one-way latency (half the round trip), in us. */
    latencyP50Us: number;
    /** Median over runs of each run's p50 round-trip time, in us. */
    rttP50Us: number;
    /** Median over runs of each run's p99 round-trip time, in us. */
    rttP99Us: number;
    /** Each run's p50 latency, in run order. */
    latencyP50UsRuns: number[];
  };
  stream: {
    runs: number;
    /** Median over runs, in Gbit/s (10^9 bit/s). */
    gbitPerS: number;
    /** Median over runs, in MiB/s. */
    mibPerS: number;
    /** Each run's Gbit/s, in run order. */
    gbitPerSRuns: number[];
  };
}

/** Whether the offload column really measured offloaded connections. */
export interface OffloadCheck {
  /** Offload-mode runs whose agent counters were read. */
  trialsChecked: number;
  /** Of those, runs in which the agent offloaded no connection at all. */
  trialsNotOffloaded: number;
  /** Connections the agent offloaded, over all checked runs. */
  offloadedConnections: number;
  /** Connections that fell back to kernel TCP, over all checked runs. */
  fallbacks: number;
}

export interface Comparison {
  params: ComparisonParams;
  modes: Record<BenchMode, ModeSummary>;
  ratios: {
    /** ipoib p50 latency / offload p50 latency: above 1 means offload is faster. */
    latency: number;
    /** offload Gbit/s / ipoib Gbit/s: above 1 means offload moves more. */
    bandwidth: number;
  };
  /** Present when at least one offload run's agent counters were read. */
  offloadCheck?: OffloadCheck;
  trials: TrialRecord[];
}

export interface MemoryPerConnection {
  ringBytes: number;
  agentStateBytes: number;
  totalBytes: number;
}

/** ipoib / offload: how many times lower the offload latency is (above 1 = offload faster). */
export function latencyRatio(ipoibUs: number, offloadUs: number): number {
  return ipoibUs / offloadUs;
}

/** offload / ipoib: how many times more bandwidth offload has (above 1 = offload faster). */
export function bandwidthRatio(offloadGbit: number, ipoibGbit: number): number {
  return offloadGbit / ipoibGbit;
}

function summarizeMode(mode: BenchMode, trials: readonly TrialRecord[], label: string): ModeSummary {
  const pp = trials
    .filter((t) => t.mode === mode && t.workload === 'pp')
    .map((t) => t.result as PingPongPpResult);
  const stream = trials
    .filter((t) => t.mode === mode && t.workload === 'stream')
    .map((t) => t.result as PingPongStreamResult);
  const med = (xs: number[]): number => (xs.length === 0 ? Number.NaN : median(xs));
  const latencies = pp.map((r) => r.latency_us);
  const gbits = stream.map((r) => r.gbit_per_s);
  return {
    mode,
    label,
    pp: {
      runs: pp.length,
      latencyP50Us: med(latencies),
      rttP50Us: med(pp.map((r) => r.rtt_us.p50)),
      rttP99Us: med(pp.map((r) => r.rtt_us.p99)),
      latencyP50UsRuns: latencies,
    },
    stream: {
      runs: stream.length,
      gbitPerS: med(gbits),
      mibPerS: med(stream.map((r) => r.mib_per_s)),
      gbitPerSRuns: gbits,
    },
  };
}

/** Medians per mode, the two ratios, and the offload check, from the individual runs. */
/** What each mode ran over, for the report; the defaults are this host's shm and loopback. */
export type ModeLabels = Readonly<Record<BenchMode, string>>;

export function summarizeTrials(params: ComparisonParams, trials: readonly TrialRecord[],
  labels: ModeLabels = MODE_LABELS): Comparison {
  for (const t of trials) {
    if (t.result.mode !== t.workload) {
      throw new RangeError(`trial rep ${t.rep} position ${t.position}: ${t.workload} run holds a ${t.result.mode} result`);
    }
  }
  const offload = summarizeMode('offload', trials, labels.offload);
  const ipoib = summarizeMode('ipoib', trials, labels.ipoib);
  const checked = trials.filter((t) => t.mode === 'offload' && t.agent !== undefined);
  const comparison: Comparison = {
    params: { ...params },
    modes: { offload, ipoib },
    ratios: {
      latency: latencyRatio(ipoib.pp.latencyP50Us, offload.pp.latencyP50Us),
      bandwidth: bandwidthRatio(offload.stream.gbitPerS, ipoib.stream.gbitPerS),
    },
    trials: [...trials],
  };
  if (checked.length > 0) {
    comparison.offloadCheck = {
      trialsChecked: checked.length,
      trialsNotOffloaded: checked.filter((t) => t.agent!.offloaded <= 0).length,
      offloadedConnections: checked.reduce((n, t) => n + t.agent!.offloaded, 0),
      fallbacks: checked.reduce((n, t) => n + t.agent!.fallbacks, 0),
    };
  }
  return comparison;
}

function trimDecimals(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** 64 -> "64 B", 65536 -> "64 KiB", 1228.8 -> "1.2 KiB", 1.5 MiB -> "1.5 MiB". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'n/a';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? String(Math.round(v)) : trimDecimals(v.toFixed(1))} ${units[u]}`;
}

/** Microseconds: two decimals below 1 us, one below 1000 us, none above. */
export function formatMicros(us: number): string {
  if (!Number.isFinite(us)) return 'n/a';
  const digits = us < 1 ? 2 : us < 1000 ? 1 : 0;
  return `${us.toFixed(digits)} us`;
}

export function formatGbit(gbit: number): string {
  if (!Number.isFinite(gbit)) return 'n/a';
  return `${gbit.toFixed(gbit < 1 ? 2 : 1)} Gbit/s`;
}

/** A latency ratio (ipoib / offload): "3.61x faster", or "2.00x slower" below 1. */
export function formatLatencyRatio(ratio: number): string {
  if (!Number.isFinite(ratio) || ratio <= 0) return 'n/a';
  if (ratio.toFixed(2) === '1.00' && (1 / ratio).toFixed(2) === '1.00') return '1.00x (same)';
  return ratio >= 1 ? `${ratio.toFixed(2)}x faster` : `${(1 / ratio).toFixed(2)}x slower`;
}

/** A bandwidth ratio (offload / ipoib): "1.87x", or "0.53x (lower)" below 1. */
export function formatBandwidthRatio(ratio: number): string {
  if (!Number.isFinite(ratio) || ratio <= 0) return 'n/a';
  return ratio >= 1 ? `${ratio.toFixed(2)}x` : `${ratio.toFixed(2)}x (lower)`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The comparison as a plain-text table, with optional memory figures and notes. */
export function formatComparison(c: Comparison, memory?: MemoryPerConnection): string {
  const { offload, ipoib } = c.modes;
  const p = c.params;
  const pp = `${formatBytes(p.ppSize)} ping-pong`;
  const rows: string[][] = [
    ['workload', offload.label, ipoib.label, 'ratio'],
    [`${pp} latency p50`, formatMicros(offload.pp.latencyP50Us), formatMicros(ipoib.pp.latencyP50Us),
      formatLatencyRatio(c.ratios.latency)],
    [`${pp} round trip p99`, formatMicros(offload.pp.rttP99Us), formatMicros(ipoib.pp.rttP99Us),
      formatLatencyRatio(latencyRatio(ipoib.pp.rttP99Us, offload.pp.rttP99Us))],
    [`stream bandwidth (${formatBytes(p.streamSize)})`, formatGbit(offload.stream.gbitPerS),
      formatGbit(ipoib.stream.gbitPerS), formatBandwidthRatio(c.ratios.bandwidth)],
  ];
  const lines = [formatTable(rows)];
  if (memory) {
    lines.push(`memory per offloaded connection: ${formatBytes(memory.ringBytes)} shared rings + `
      + `${formatBytes(memory.agentStateBytes)} agent state`);
  }
  const runs = Math.max(offload.pp.runs, offload.stream.runs, ipoib.pp.runs, ipoib.stream.runs);
  lines.push(`(medians of ${plural(runs, 'run')}, modes alternated, each run in fresh processes)`);
  lines.push(`(latency = half the round trip; ${p.ppIters} timed round trips and ${p.streamSeconds} s of stream per run)`);
  const check = c.offloadCheck;
  if (check && check.trialsNotOffloaded > 0) {
    lines.push(`WARNING: in ${check.trialsNotOffloaded} of ${check.trialsChecked} offload-mode runs the agent`
      + ' offloaded no connection: those runs measured kernel TCP, not vtoe');
  }
  if (check && check.fallbacks > 0) {
    lines.push(`WARNING: ${plural(check.fallbacks, 'connection')} of the offload-mode runs fell back to kernel TCP`);
  }
  return lines.join('\n');
}
