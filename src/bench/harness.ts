// `vtoe bench`: run workloads in the modes offload, ipoib and native, each trial a fresh
// process tree, the modes' order rotated from one repetition to the next, medians taken.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';
import { adminRequest } from '../agent/admin.js';
import { kernelEnv, offloadEnv } from '../agent/preload-env.js';
import type { StatsSnapshot } from '../agent/stats.js';
import { adminSocketPath } from '../config.js';
import { VtoeError } from '../errors.js';
import type { BenchMode } from './mpi-modes.js';
import type { SeriesSet, SizePoint } from './series.js';
import { median } from './stats-math.js';

/** One trial's outcome, from one fresh process tree. */
export interface TrialResult {
  series: SeriesSet;
  /** Named single figures (HPCC's, iperf3's), with units in their names. */
  figures: Record<string, number>;
  /** The workload's own checks (HPCC's residuals, the ping-pong's checksum). */
  problems: string[];
  /** What the mode really ran over. */
  transport: string;
}

export interface TrialContext {
  mode: BenchMode;
  /** The environment to start the process tree with (preloaded for offload). */
  env: NodeJS.ProcessEnv;
  /** A fresh directory the trial may use; removed afterwards. */
  dir: string;
}

export interface BenchWorkload {
  name: string;
  modes: readonly BenchMode[];
  run(ctx: TrialContext): Promise<TrialResult>;
}

export interface ModeResult {
  mode: BenchMode;
  transport: string;
  trials: number;
  /** Median of every point over the trials, per benchmark and size. */
  series: SeriesSet;
  figures: Record<string, number>;
  /** The lowest and highest value of each figure over the trials: the spread behind the median. */
  figureRanges?: Record<string, [number, number]>;
  problems: string[];
  /** Offload trials: connections the agent offloaded and fallbacks, summed over the trials. */
  offloaded?: number;
  fallbacks?: Record<string, number>;
}

export interface WorkloadResult {
  workload: string;
  modes: ModeResult[];
}

export interface BenchOptions {
  workloads: readonly BenchWorkload[];
  modes: readonly BenchMode[];
  reps: number;
  onProgress?: (line: string) => void;
  /** Settings of the embedded agent for the offload trials (e.g. profile 'mpi'). */
  agentProfile?: string;
  /** The standing agent's socket, used instead of an embedded one (across hosts, where every
   * host runs its own; its counters here are this host's). */
  standingAgent?: string;
  /** Where the trials' directories go (default the system's temporary directory). */
  scratchDir?: string;
}

/** The agent of the offload trials: its socket and its counters. */
interface TrialAgent {
  socketPath: string;
  stats(): Promise<StatsSnapshot>;
  /** The counters once the trial's processes have left (at most 2 s): what a process tells at
   * exit (e.g. its count of short connections) comes before its channel's end. */
  settled(connectedBefore: number): Promise<StatsSnapshot>;
  stop(): Promise<void>;
}

async function embeddedAgent(dir: string, profile: string): Promise<TrialAgent> {
  const agent = await Agent.start({ socketPath: join(dir, 'agent.sock'), config: { profile } });
  return {
    socketPath: agent.socketPath,
    stats: async () => agent.stats(),
    settled: async (n) => {
      await agent.until((a) => a.stats().processes.connected <= n, 2000).catch(() => {});
      return agent.stats();
    },
    stop: () => agent.stop(),
  };
}

/** The standing agent on this host: asked over its admin socket, so polled for the end. */
async function standingAgent(socketPath: string): Promise<TrialAgent> {
  const stats = () => adminRequest<StatsSnapshot>(adminSocketPath(socketPath), 'stats');
  try {
    await stats();
  } catch (err) {
    throw new VtoeError('ENOENT', `no vtoe agent answers on ${socketPath}: start \`vtoe agent\` on every host first (${(err as Error).message})`);
  }
  return {
    socketPath,
    stats,
    settled: async (n) => {
      const deadline = Date.now() + 2000;
      for (;;) {
        const s = await stats();
        if (s.processes.connected <= n || Date.now() >= deadline) return s;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    stop: async () => {},
  };
}

/** Rotates the order of the modes by the repetition, so none always goes first. */
export function modeOrder<T>(modes: readonly T[], rep: number): T[] {
  const k = modes.length ? rep % modes.length : 0;
  return [...modes.slice(k), ...modes.slice(0, k)];
}

/** Point-wise medians of the trials' series: a size appears if every trial has it. */
export function medianSeries(trials: readonly SeriesSet[]): SeriesSet {
  const out: SeriesSet = {};
  if (!trials.length) return out;
  for (const name of Object.keys(trials[0]!)) {
    const points: SizePoint[] = [];
    for (const p of trials[0]![name]!) {
      const same = trials.map((t) => t[name]?.find((q) => q.bytes === p.bytes));
      if (same.some((q) => !q)) continue;
      const point: SizePoint = { bytes: p.bytes, usec: median(same.map((q) => q!.usec)) };
      const bws = same.map((q) => q!.mbPerSec).filter((v): v is number => v !== undefined);
      if (bws.length === same.length) point.mbPerSec = median(bws);
      points.push(point);
    }
    out[name] = points;
  }
  return out;
}

function figureRanges(trials: readonly Record<string, number>[]): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  for (const key of Object.keys(trials[0] ?? {})) {
    const vals = trials.map((t) => t[key]).filter((v): v is number => v !== undefined);
    if (vals.length === trials.length) out[key] = [Math.min(...vals), Math.max(...vals)];
  }
  return out;
}

function medianFigures(trials: readonly Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(trials[0] ?? {})) {
    const vals = trials.map((t) => t[key]).filter((v): v is number => v !== undefined);
    if (vals.length === trials.length) out[key] = median(vals);
  }
  return out;
}

const diff = (a: StatsSnapshot, b: StatsSnapshot) => {
  const fallbacks: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.fallback.reasons)) {
    const d = v - (a.fallback.reasons[k] ?? 0);
    if (d) fallbacks[k] = d;
  }
  return { offloaded: b.offloaded - a.offloaded, fallbacks };
};

export async function runBench(opts: BenchOptions): Promise<WorkloadResult[]> {
  const say = opts.onProgress ?? (() => {});
  const dir = mkdtempSync(join(opts.scratchDir ?? tmpdir(), 'vtoe-bench-'));
  let agent: TrialAgent | null = null;
  try {
    if (opts.modes.includes('offload')) {
      agent = opts.standingAgent ? await standingAgent(opts.standingAgent) : await embeddedAgent(dir, opts.agentProfile ?? 'mpi');
    }
    const results: WorkloadResult[] = [];
    for (const w of opts.workloads) {
      const modes = opts.modes.filter((m) => w.modes.includes(m));
      const trials = new Map<BenchMode, Array<{ r: TrialResult; offloaded?: number; fallbacks?: Record<string, number> }>>();
      for (let rep = 0; rep < opts.reps; rep++) {
        for (const mode of modeOrder(modes, rep)) {
          say(`${w.name}: ${mode}, repetition ${rep + 1} of ${opts.reps}`);
          const trialDir = mkdtempSync(join(dir, `${w.name}-${mode}-`));
          const env = mode === 'offload' ? offloadEnv(agent!.socketPath) : kernelEnv();
          const before = mode === 'offload' && agent ? await agent.stats() : undefined;
          try {
            const r = await w.run({ mode, env, dir: trialDir });
            const d = agent && before ? diff(before, await agent.settled(before.processes.connected)) : undefined;
            if (d && d.offloaded === 0) r.problems.push('no connection was offloaded: the offload mode did not offload');
            (trials.get(mode) ?? trials.set(mode, []).get(mode)!).push({ r, ...d });
          } finally {
            rmSync(trialDir, { recursive: true, force: true });
          }
        }
      }
      results.push({
        workload: w.name,
        modes: modes.map((mode): ModeResult => {
          const ts = trials.get(mode) ?? [];
          const res: ModeResult = {
            mode, transport: ts[0]?.r.transport ?? '', trials: ts.length,
            series: medianSeries(ts.map((t) => t.r.series)),
            figures: medianFigures(ts.map((t) => t.r.figures)),
            figureRanges: figureRanges(ts.map((t) => t.r.figures)),
            problems: [...new Set(ts.flatMap((t) => t.r.problems))],
          };
          if (mode === 'offload') {
            res.offloaded = ts.reduce((n, t) => n + (t.offloaded ?? 0), 0);
            res.fallbacks = {};
            for (const t of ts) for (const [k, v] of Object.entries(t.fallbacks ?? {})) res.fallbacks[k] = (res.fallbacks[k] ?? 0) + v;
          }
          return res;
        }),
      });
    }
    return results;
  } finally {
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
