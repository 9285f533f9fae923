// The A/B harness: the same ping-pong and stream workloads through vtoe (offload) and over
// plain kernel TCP (ipoib), alternating which mode goes first, each run in fresh processes.
import { kernelEnv, offloadEnv } from '../agent/preload-env.js';
import {
  MODE_LABELS,
  formatBytes,
  formatGbit,
  formatMicros,
  summarizeTrials,
  type AgentDelta,
  type BenchMode,
  type Comparison,
  type ComparisonParams,
  type ModeLabels,
  type TrialRecord,
  type Workload,
} from './format.js';
import { runPingPong, type PingPongResult } from './pingpong.js';

export type {
  AgentDelta,
  BenchMode,
  Comparison,
  ComparisonParams,
  ModeLabels,
  ModeSummary,
  OffloadCheck,
  TrialRecord,
  Workload,
} from './format.js';
export { MODE_LABELS } from './format.js';

/** The part of Agent.stats() the harness reads to check that offload really happened. */
export interface AgentCountersLike {
  offloaded: number;
  fallback: { total: number };
}

export interface CompareOptions {
  /** The agent's control socket; offload runs get offloadEnv(agentSocket). */
  agentSocket: string;
  /** Repetitions; each runs pp and stream once in each mode. */
  reps: number;
  ppSize: number;
  /** Timed round trips per pp run. */
  ppIters: number;
  streamSize: number;
  streamSeconds: number;
  onProgress?: (line: string) => void;
  /** Untimed round trips before the timed ones. Default: ppIters / 10, at most 1000. */
  ppWarmup?: number;
  /** Environment both modes start from (LD_PRELOAD is removed first). Default: process.env. */
  baseEnv?: NodeJS.ProcessEnv;
  /**
   * Reads the agent's counters (e.g. () => agent.stats()). When given, every offload run is
   * checked: the comparison records whether the agent offloaded its connection or fell back.
   */
  agentStats?: () => AgentCountersLike;
  /** Per-run timeout; default: runPingPong's. */
  timeoutMs?: number;
  /** What each mode really runs over (e.g. the verbs fabric on Soft-RoCE); default MODE_LABELS. */
  labels?: ModeLabels;
}

function checkPositive(name: string, v: number, integer: boolean): void {
  if (!(Number.isFinite(v) && v > 0 && (!integer || Number.isSafeInteger(v)))) {
    throw new RangeError(`compareOffloadVsTcp: ${name} must be a positive ${integer ? 'integer' : 'number'}, got ${v}`);
  }
}

function describe(result: PingPongResult): string {
  return result.mode === 'pp'
    ? `latency p50 ${formatMicros(result.latency_us)} (round trip p99 ${formatMicros(result.rtt_us.p99)})`
    : `${formatGbit(result.gbit_per_s)}`;
}

/** The modes of repetition `rep` in run order: offload first on even reps, ipoib first on odd. */
export function modeOrder(rep: number): [BenchMode, BenchMode] {
  return rep % 2 === 0 ? ['offload', 'ipoib'] : ['ipoib', 'offload'];
}

export async function compareOffloadVsTcp(opts: CompareOptions): Promise<Comparison> {
  checkPositive('reps', opts.reps, true);
  checkPositive('ppSize', opts.ppSize, true);
  checkPositive('ppIters', opts.ppIters, true);
  checkPositive('streamSize', opts.streamSize, true);
  checkPositive('streamSeconds', opts.streamSeconds, false);
  const ppWarmup = opts.ppWarmup ?? Math.min(1000, Math.ceil(opts.ppIters / 10));
  if (!(Number.isSafeInteger(ppWarmup) && ppWarmup >= 0)) {
    throw new RangeError(`compareOffloadVsTcp: ppWarmup must be a non-negative integer, got ${ppWarmup}`);
  }
  const params: ComparisonParams = {
    reps: opts.reps,
    ppSize: opts.ppSize,
    ppIters: opts.ppIters,
    ppWarmup,
    streamSize: opts.streamSize,
    streamSeconds: opts.streamSeconds,
  };
  const plain = kernelEnv(opts.baseEnv ?? process.env);
  const envs: Record<BenchMode, NodeJS.ProcessEnv> = {
    offload: offloadEnv(opts.agentSocket, plain),
    ipoib: plain,
  };
  const progress = opts.onProgress ?? (() => {});
  const labels = opts.labels ?? MODE_LABELS;
  const workloads: Workload[] = ['pp', 'stream'];
  const trials: TrialRecord[] = [];

  for (let rep = 0; rep < opts.reps; rep++) {
    let position = 0;
    for (const workload of workloads) {
      for (const mode of modeOrder(rep)) {
        const before = mode === 'offload' && opts.agentStats ? opts.agentStats() : undefined;
        const common = { env: envs[mode], ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) };
        let result: PingPongResult;
        try {
          result = workload === 'pp'
            ? await runPingPong({ ...common, mode: 'pp', size: opts.ppSize, iters: opts.ppIters, warmup: ppWarmup })
            : await runPingPong({ ...common, mode: 'stream', size: opts.streamSize, seconds: opts.streamSeconds });
        } catch (err) {
          const what = `rep ${rep + 1}/${opts.reps}, ${labels[mode]}, ${workload}`;
          throw new Error(`benchmark run failed (${what}): ${(err as Error).message}`, { cause: err });
        }
        const trial: TrialRecord = { rep, position: position++, mode, workload, result };
        if (before && opts.agentStats) {
          const after = opts.agentStats();
          const agent: AgentDelta = {
            offloaded: after.offloaded - before.offloaded,
            fallbacks: after.fallback.total - before.fallback.total,
          };
          trial.agent = agent;
        }
        trials.push(trial);
        const label = workload === 'pp'
          ? `${formatBytes(opts.ppSize)} ping-pong`
          : `stream (${formatBytes(opts.streamSize)})`;
        const note = trial.agent && (trial.agent.offloaded <= 0 || trial.agent.fallbacks > 0)
          ? ` [agent: ${trial.agent.offloaded} offloaded, ${trial.agent.fallbacks} fell back]`
          : '';
        progress(`rep ${rep + 1}/${opts.reps}  ${labels[mode]}  ${label}: ${describe(result)}${note}`);
      }
    }
  }
  return summarizeTrials(params, trials, labels);
}
