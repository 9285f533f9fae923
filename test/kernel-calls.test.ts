// Kernel calls per round trip: the counters' outputs (real ones, test/fixtures/kernel-calls/) and
// the arithmetic of src/bench/kernel-calls.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  PERF_SYSCALL_NAMES, formatCalls, kernelCallFigures, kernelCallsOfFigures, kernelCallsTable, parsePerfStat,
  parseStraceSummary, perRoundTrip, perfEvents, topCalls,
} from '../src/bench/kernel-calls.js';

const fixture = (name: string) => readFileSync(join(__dirname, 'fixtures', 'kernel-calls', name), 'utf8');
const counts = (counter: 'strace' | 'perf', n: number, rank: number) =>
  (counter === 'perf' ? parsePerfStat : parseStraceSummary)(fixture(`${counter}-openmpi-tcp-lo-${n}-rank${rank}.txt`));

describe('kernel calls per round trip', () => {
  it('reads strace -f -c: every row, the sum checked against its total row', () => {
    const c = counts('strace', 11000, 0);
    expect(c.total).toBe(68382);
    expect(c.byName.poll).toBe(44786);
    expect(c.byName.readv).toBe(11001);
    expect(c.byName.writev).toBe(11014);
    expect(c.byName.futex).toBe(183); // a row with an errors column
    expect(c.byName.execve).toBe(1);
    expect(Object.values(c.byName).reduce((a, b) => a + b, 0)).toBe(c.total);
  });

  it('reads perf stat -x, output: raw_syscalls is the total, the rest of the names are "other"', () => {
    const c = counts('perf', 11000, 0);
    expect(c.total).toBe(93835);
    expect(c.byName.poll).toBe(70130);
    expect(c.byName.readv).toBe(11001);
    expect(c.byName.other).toBe(658);
    expect(c.byName.sendmmsg).toBeUndefined(); // counted 0
    expect(Object.values(c.byName).reduce((a, b) => a + b, 0)).toBe(c.total);
  });

  it("subtracts the short run: a rank's calls per round trip, by name", () => {
    const s = perRoundTrip(counts('strace', 1000, 0), counts('strace', 11000, 0), 1000, 11000);
    expect(s.total).toBeCloseTo(6.0724, 6);
    expect(s.byName.readv).toBe(1);
    expect(s.byName.writev).toBe(1);
    expect(s.byName.poll).toBeCloseTo(4.0742, 6);
    expect(s.byName.futex).toBeCloseTo(-0.0012, 6); // set-up noise, left in the figures' sums
    expect(formatCalls(s)).toBe('poll 4.07, readv 1.00, writev 1.00');
    const p = perRoundTrip(counts('perf', 1000, 1), counts('perf', 11000, 1), 1000, 11000);
    expect(p.total).toBeCloseTo(15.4573, 6);
    expect(p.byName.other).toBeCloseTo(0.0001, 6); // the named calls are all the loop makes
    expect(formatCalls(p)).toBe('poll 13.46, readv 1.00, writev 1.00');
    expect(() => perRoundTrip(s, s, 5, 5)).toThrow(/n2 > n1/);
  });

  it('refuses what it cannot read', () => {
    expect(() => parseStraceSummary('hello\n')).toThrow(/not strace -c output/);
    const broken = fixture('strace-openmpi-tcp-lo-1000-rank0.txt').replace(/\b7658\b/, '7659');
    expect(() => parseStraceSummary(broken)).toThrow(/sum to 7658 calls, its total says 7659/);
    expect(() => parsePerfStat('<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n')).toThrow(/did not count raw_syscalls/);
    expect(() => parsePerfStat('# started on a day\n\n')).toThrow(/not perf stat/);
  });

  it('names perf events for the syscalls', () => {
    expect(perfEvents(['poll', 'sendto'])).toBe('raw_syscalls:sys_enter,syscalls:sys_enter_poll,syscalls:sys_enter_sendto');
    expect(PERF_SYSCALL_NAMES).toContain('epoll_wait');
  });

  it('keeps the largest names, then "other"; below the threshold nothing', () => {
    const c = { total: 9.5, byName: { other: 2, poll: 5.5, sendto: 1, recvfrom: 1, futex: 0.004 } };
    expect(topCalls(c, 2)).toEqual([['poll', 5.5], ['recvfrom', 1], ['other', 2]]);
    expect(formatCalls({ total: 0.003, byName: { poll: 0.003 } })).toBe('none');
  });

  it('turns the ranks into bench figures and back into the summary table', () => {
    const ranks = [0, 1].map((r) => perRoundTrip(counts('perf', 1000, r), counts('perf', 11000, r), 1000, 11000));
    const f = kernelCallFigures(ranks, 23.36);
    expect(f.kcalls_rt).toBeCloseTo(8.3857 + 15.4573, 6);
    expect(f.kcalls_rt_rank0).toBeCloseTo(8.3857, 6);
    expect(f['kcalls_rt_rank1:poll']).toBeCloseTo(13.4638, 6);
    expect(f['kcalls_rt_rank0:futex']).toBeUndefined(); // under 0.01 per round trip
    expect(f.kcalls_oneway_us).toBe(23.36);
    const back = kernelCallsOfFigures(f);
    expect(back.map((r) => r.total)).toEqual([f.kcalls_rt_rank0, f.kcalls_rt_rank1]);
    const zero = kernelCallFigures([{ total: 0, byName: {} }, { total: 0.0002, byName: { futex: 0.0002 } }], 1.1);
    expect(kernelCallsTable([{ mode: 'offload', figures: zero }, { mode: 'ipoib', figures: f }, { mode: 'x', figures: {} }])).toEqual([
      '| mode | calls per round trip, both ranks | rank 0: calls per round trip (top calls) | rank 1: calls per round trip (top calls) | one-way µs while counted |',
      '| --- | --- | --- | --- | --- |',
      '| offload | 0.00 | 0.00 (none) | 0.00 (none) | 1.10 |',
      '| ipoib | 23.84 | 8.39 (poll 6.40, readv 1.00, writev 1.00) | 15.46 (poll 13.46, readv 1.00, writev 1.00) | 23.36 |',
    ]);
  });
});
