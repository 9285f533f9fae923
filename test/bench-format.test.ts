import { describe, expect, it } from 'vitest';
import {
  MODE_LABELS,
  bandwidthRatio,
  formatBandwidthRatio,
  formatBytes,
  formatComparison,
  formatGbit,
  formatLatencyRatio,
  formatMicros,
  latencyRatio,
  summarizeTrials,
  type BenchMode,
  type ComparisonParams,
  type TrialRecord,
} from '../src/bench/format.js';
import { mean, median, percentile, percentileSorted } from '../src/bench/stats-math.js';
import { parsePingPongOutput, type PingPongPpResult, type PingPongStreamResult } from '../src/bench/pingpong.js';
import { formatTable } from '../src/text-table.js';
import { modeLabels, type BenchCommandOptions } from '../src/bench/bench-command.js';

describe('stats-math', () => {
  it('median of odd and even counts, any order', () => {
    expect(median([5])).toBe(5);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([10, 1, 1, 1, 100])).toBe(1);
    expect(median([-2, 2])).toBe(0);
  });

  it('does not reorder its input', () => {
    const xs = [3, 1, 2];
    median(xs);
    expect(xs).toEqual([3, 1, 2]);
  });

  it('percentile interpolates linearly between closest ranks', () => {
    const xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(percentile(xs, 0)).toBe(1);
    expect(percentile(xs, 100)).toBe(10);
    expect(percentile(xs, 50)).toBe(5.5);
    expect(percentile(xs, 90)).toBeCloseTo(9.1, 12);
    expect(percentile(xs, 99)).toBeCloseTo(9.91, 12);
    expect(percentile([7], 99)).toBe(7);
    expect(percentileSorted([0, 10], 25)).toBe(2.5);
    // 101 values 0..100: the p-th percentile is p.
    const hundred = Array.from({ length: 101 }, (_, i) => 100 - i);
    for (const p of [0, 1, 25, 50, 90, 99, 100]) expect(percentile(hundred, p)).toBeCloseTo(p, 12);
  });

  it('mean', () => {
    expect(mean([1, 2, 3, 4])).toBe(2.5);
  });

  it('rejects empty lists, non-finite values and bad percentiles', () => {
    expect(() => median([])).toThrow(RangeError);
    expect(() => median([1, Number.NaN])).toThrow(RangeError);
    expect(() => percentile([1, 2], 101)).toThrow(RangeError);
    expect(() => percentile([1, 2], -1)).toThrow(RangeError);
  });
});

describe('ratios', () => {
  it('latency ratio is ipoib / offload: above 1 when offload is faster', () => {
    expect(latencyRatio(14.8, 4.0)).toBeCloseTo(3.7, 12);
    expect(latencyRatio(4.0, 8.0)).toBe(0.5);
  });

  it('bandwidth ratio is offload / ipoib: above 1 when offload moves more', () => {
    expect(bandwidthRatio(40, 20)).toBe(2);
    expect(bandwidthRatio(10, 20)).toBe(0.5);
  });

  it('formats the direction in words', () => {
    expect(formatLatencyRatio(3.6125)).toBe('3.61x faster');
    expect(formatLatencyRatio(0.5)).toBe('2.00x slower');
    expect(formatLatencyRatio(1.001)).toBe('1.00x (same)');
    expect(formatLatencyRatio(0.999)).toBe('1.00x (same)');
    expect(formatLatencyRatio(1.006)).toBe('1.01x faster');
    expect(formatLatencyRatio(Number.NaN)).toBe('n/a');
    expect(formatBandwidthRatio(1.8727)).toBe('1.87x');
    expect(formatBandwidthRatio(0.5)).toBe('0.50x (lower)');
    expect(formatBandwidthRatio(Number.POSITIVE_INFINITY)).toBe('n/a');
  });
});

describe('unit formatting', () => {
  it('bytes', () => {
    expect(formatBytes(64)).toBe('64 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(65536)).toBe('64 KiB');
    expect(formatBytes(528 * 1024)).toBe('528 KiB');
    expect(formatBytes(1.2 * 1024)).toBe('1.2 KiB');
    expect(formatBytes(1.5 * 1024 * 1024)).toBe('1.5 MiB');
  });

  it('microseconds and Gbit/s', () => {
    expect(formatMicros(4.1234)).toBe('4.1 us');
    expect(formatMicros(0.456)).toBe('0.46 us');
    expect(formatMicros(14.75)).toBe('14.8 us');
    expect(formatMicros(1234.5)).toBe('1235 us');
    expect(formatGbit(41.23)).toBe('41.2 Gbit/s');
    expect(formatGbit(0.456)).toBe('0.46 Gbit/s');
  });

  it('tables: aligned columns, no trailing blanks', () => {
    expect(formatTable([['a', 'bb', 'c'], ['ccc', 'd', '']])).toBe('a    bb  c\nccc  d');
  });
});

const params: ComparisonParams = {
  reps: 3, ppSize: 64, ppIters: 1000, ppWarmup: 100, streamSize: 65536, streamSeconds: 1,
};

function pp(latency: number, p99 = latency * 4): PingPongPpResult {
  return {
    mode: 'pp', size: 64, iters: 1000, warmup: 100,
    rtt_us: { min: latency, p50: latency * 2, p90: latency * 3, p99, mean: latency * 2 },
    latency_us: latency,
  };
}

function stream(gbit: number): PingPongStreamResult {
  return { mode: 'stream', size: 65536, bytes: gbit * 1e9 / 8, seconds: 1, gbit_per_s: gbit, mib_per_s: gbit * 1e9 / 8 / 1048576 };
}

/** Three reps of known figures, in the harness's ABAB / BABA order. */
function knownTrials(): TrialRecord[] {
  const offloadLat = [4.0, 100.0, 4.2]; // one outlier: the median ignores it
  const ipoibLat = [14.8, 15.0, 14.0];
  const offloadGbit = [41.2, 40.0, 5.0];
  const ipoibGbit = [22.0, 23.0, 21.0];
  const trials: TrialRecord[] = [];
  for (let rep = 0; rep < 3; rep++) {
    const order: BenchMode[] = rep % 2 === 0 ? ['offload', 'ipoib'] : ['ipoib', 'offload'];
    let position = 0;
    for (const mode of order) {
      trials.push({ rep, position: position++, mode, workload: 'pp',
        result: pp(mode === 'offload' ? offloadLat[rep]! : ipoibLat[rep]!) });
    }
    for (const mode of order) {
      trials.push({ rep, position: position++, mode, workload: 'stream',
        result: stream(mode === 'offload' ? offloadGbit[rep]! : ipoibGbit[rep]!),
        ...(mode === 'offload' ? { agent: { offloaded: 2, fallbacks: 0 } } : {}) });
    }
  }
  return trials;
}

describe('summarizeTrials', () => {
  it('takes medians per mode and computes both ratios in the right direction', () => {
    const c = summarizeTrials(params, knownTrials());
    expect(c.modes.offload.pp.latencyP50Us).toBe(4.2);
    expect(c.modes.ipoib.pp.latencyP50Us).toBe(14.8);
    expect(c.modes.offload.pp.rttP50Us).toBe(8.4);
    expect(c.modes.offload.pp.latencyP50UsRuns).toEqual([4.0, 100.0, 4.2]);
    expect(c.modes.offload.stream.gbitPerS).toBe(40.0);
    expect(c.modes.ipoib.stream.gbitPerS).toBe(22.0);
    expect(c.modes.offload.pp.runs).toBe(3);
    expect(c.modes.ipoib.stream.runs).toBe(3);
    expect(c.ratios.latency).toBeCloseTo(14.8 / 4.2, 12);
    expect(c.ratios.latency).toBeGreaterThan(1);
    expect(c.ratios.bandwidth).toBeCloseTo(40 / 22, 12);
    expect(c.modes.offload.label).toBe(MODE_LABELS.offload);
    expect(c.modes.ipoib.label).toBe('ipoib (kernel TCP over lo)');
    expect(c.trials).toHaveLength(12);
    expect(c.offloadCheck).toEqual({ trialsChecked: 3, trialsNotOffloaded: 0, offloadedConnections: 6, fallbacks: 0 });
  });

  it('a slower offload gives ratios below 1', () => {
    const trials = knownTrials().map((t) => ({ ...t, mode: (t.mode === 'offload' ? 'ipoib' : 'offload') as BenchMode }));
    const c = summarizeTrials(params, trials);
    expect(c.ratios.latency).toBeCloseTo(4.2 / 14.8, 12);
    expect(c.ratios.bandwidth).toBeCloseTo(22 / 40, 12);
    expect(c.offloadCheck).toBeUndefined();
  });

  it('rejects a result that does not match its workload', () => {
    const trials = knownTrials();
    trials[0] = { ...trials[0]!, result: stream(1) };
    expect(() => summarizeTrials(params, trials)).toThrow(/pp run holds a stream result/);
  });
});

describe('formatComparison', () => {
  it('prints the table with labels, medians, ratios, memory and the method', () => {
    const c = summarizeTrials(params, knownTrials());
    const text = formatComparison(c, { ringBytes: 528 * 1024, agentStateBytes: 1229, totalBytes: 528 * 1024 + 1229 });
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^workload\s+offload \(vtoe shm fabric\)\s+ipoib \(kernel TCP over lo\)\s+ratio$/);
    expect(lines[1]).toMatch(/^64 B ping-pong latency p50\s+4\.2 us\s+14\.8 us\s+3\.52x faster$/);
    expect(lines[2]).toMatch(/^64 B ping-pong round trip p99\s+16\.8 us\s+59\.2 us\s+3\.52x faster$/);
    expect(lines[3]).toMatch(/^stream bandwidth \(64 KiB\)\s+40\.0 Gbit\/s\s+22\.0 Gbit\/s\s+1\.82x$/);
    expect(lines[4]).toBe('memory per offloaded connection: 528 KiB shared rings + 1.2 KiB agent state');
    expect(lines[5]).toBe('(medians of 3 runs, modes alternated, each run in fresh processes)');
    expect(text).toContain('1000 timed round trips and 1 s of stream per run');
    expect(text).not.toContain('WARNING');
    // Columns line up: every value of a column starts at the same offset.
    const col = (l: string, word: string): number => l.indexOf(word);
    expect(col(lines[1]!, '4.2 us')).toBe(col(lines[0]!, 'offload'));
    expect(col(lines[3]!, '22.0 Gbit/s')).toBe(col(lines[0]!, 'ipoib'));
    expect(col(lines[3]!, '1.82x')).toBe(col(lines[0]!, 'ratio'));
    for (const l of lines) expect(l).toBe(l.trimEnd());
  });

  it('omits the memory line without figures and warns when offload did not happen', () => {
    const trials = knownTrials().map((t) => (t.agent ? { ...t, agent: { offloaded: 0, fallbacks: 2 } } : t));
    const text = formatComparison(summarizeTrials(params, trials));
    expect(text).not.toContain('memory per offloaded connection');
    expect(text).toContain('WARNING: in 3 of 3 offload-mode runs the agent offloaded no connection');
    expect(text).toContain('WARNING: 6 connections of the offload-mode runs fell back to kernel TCP');
  });

  it('uses the sizes it was given', () => {
    const c = summarizeTrials({ ...params, ppSize: 1024, streamSize: 1 << 20 }, knownTrials());
    const text = formatComparison(c);
    expect(text).toContain('1 KiB ping-pong latency p50');
    expect(text).toContain('stream bandwidth (1 MiB)');
  });
});

describe('parsePingPongOutput', () => {
  it('parses both result shapes', () => {
    const ppLine = '{"mode":"pp","size":64,"iters":200,"warmup":20,"rtt_us":{"min":1.5,"p50":2,"p90":3,"p99":4,"mean":2.1},"latency_us":1}';
    expect(parsePingPongOutput(ppLine)).toEqual({
      mode: 'pp', size: 64, iters: 200, warmup: 20,
      rtt_us: { min: 1.5, p50: 2, p90: 3, p99: 4, mean: 2.1 }, latency_us: 1,
    });
    const sLine = '{"mode":"stream","size":65536,"bytes":131072,"seconds":0.5,"gbit_per_s":0.0021,"mib_per_s":0.25}';
    expect(parsePingPongOutput(sLine)).toMatchObject({ mode: 'stream', bytes: 131072, seconds: 0.5 });
  });

  it('rejects malformed output', () => {
    expect(() => parsePingPongOutput('READY 1234')).toThrow(/not JSON/);
    expect(() => parsePingPongOutput('{"mode":"pp","size":64}')).toThrow(/rtt_us/);
    expect(() => parsePingPongOutput('{"mode":"stream","size":1,"bytes":"x"}')).toThrow(/bytes/);
    expect(() => parsePingPongOutput('{"mode":"udp"}')).toThrow(/unknown mode/);
  });
});

describe('what each mode ran over, as the report says', () => {
  const base: BenchCommandOptions = {
    workloads: ['connect'], modes: ['offload', 'ipoib', 'native'], mpi: 'openmpi', reps: 1, ranks: 2, tcpInterface: 'lo',
    maxBytes: 4096, iters: 100, hpccMaxN: 1000, timeoutMs: 1000,
  };
  it('names TCP sockets, not an MPI, for socket workloads alone', () => {
    expect(modeLabels(base)).toEqual({
      offload: 'offload: TCP sockets over lo through vtoe (shm rings between the processes)',
      ipoib: 'ipoib: TCP sockets over lo, kernel TCP',
    });
  });
  it("names the MPI's transports as soon as an MPI workload is in the run", () => {
    const labels = modeLabels({ ...base, workloads: ['connect', 'imb'] });
    expect(labels.offload).toBe('offload: Open MPI TCP BTL over lo through vtoe (shm rings between the ranks)');
    expect(labels.native).toBe("native: Open MPI's vader shared-memory BTL");
  });
});
