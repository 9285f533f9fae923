import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hpccInput, parseHpccOutput, problemSize, processGrid } from '../src/bench/hpcc.js';

// hpccoutf.txt of Debian's hpcc 1.5.0, 2 ranks of Open MPI 4.1.4 over vtoe, N=1000, on this machine.
const sample = readFileSync(join(__dirname, 'fixtures', 'hpcc', 'openmpi-offload-np2-n1000.txt'), 'utf8');

describe('HPCC input', () => {
  it('factors the ranks into the most square grid', () => {
    expect(processGrid(1)).toEqual({ p: 1, q: 1 });
    expect(processGrid(2)).toEqual({ p: 1, q: 2 });
    expect(processGrid(4)).toEqual({ p: 2, q: 2 });
    expect(processGrid(6)).toEqual({ p: 2, q: 3 });
    expect(processGrid(7)).toEqual({ p: 1, q: 7 });
    expect(processGrid(12)).toEqual({ p: 3, q: 4 });
    expect(() => processGrid(0)).toThrow(/positive integer/);
  });

  it('sizes N by memory, capped, as a multiple of NB', () => {
    expect(problemSize({ ranks: 2, memoryBytes: 8 * 1000 * 1000, maxN: 10_000 })).toBe(960);
    expect(problemSize({ ranks: 2, memoryBytes: 24 * 2 ** 30, maxN: 4000 })).toBe(4000);
    expect(problemSize({ ranks: 2, memoryBytes: 100, maxN: 4000 })).toBe(80);
  });

  it('writes the layout HPCC reads: line 6 is N, lines 11-12 the grid, line 32 the separator', () => {
    const lines = hpccInput({ ranks: 6, memoryBytes: 2 ** 30, maxN: 2000 }).split('\n');
    expect(lines[5]).toMatch(/^2000\s+Ns$/);
    expect(lines[7]).toMatch(/^80\s+NBs$/);
    expect(lines[10]).toMatch(/^2\s+Ps$/);
    expect(lines[11]).toMatch(/^3\s+Qs$/);
    expect(lines[31]).toMatch(/^##### This line \(no\. 32\) is ignored/);
    expect(lines.length).toBe(37);
  });
});

describe('HPCC summary', () => {
  it('reads a real run: valid, with every application figure', () => {
    const s = parseHpccOutput(sample);
    expect(s.problems).toEqual([]);
    expect(s.valid).toBe(true);
    expect(s.raw.HPL_N).toBe('1000');
    expect(s.figures.HPL_Tflops).toBeCloseTo(2.15588, 4); // reported in Tflop/s, kept in Gflop/s
    expect(s.figures.PTRANS_GBs).toBeCloseTo(0.348974, 6);
    expect(s.figures.MPIRandomAccess_GUPs).toBeCloseTo(0.00105071, 8);
    expect(s.figures.MPIFFT_Gflops).toBeCloseTo(3.70602, 5);
    expect(s.figures.MaxPingPongLatency_usec).toBeCloseTo(5.36631, 5);
    expect(s.figures.RandomlyOrderedRingBandwidth_GBytes).toBeCloseTo(1.46237, 5);
  });

  it('is invalid when HPCC says so, or did not finish', () => {
    expect(parseHpccOutput(sample.replace('Success=1', 'Success=0')).problems).toEqual(['Success=0']);
    const failed = sample.replace('0 tests completed and failed residual checks', '2 tests completed and failed residual checks');
    expect(parseHpccOutput(failed).valid).toBe(false);
    expect(parseHpccOutput(sample.slice(0, sample.indexOf('Begin of Summary'))).problems)
      .toEqual(['no summary section: HPCC did not finish']);
  });
});
