import { describe, expect, it } from 'vitest';
import { PinnedBudget, pinnedBytesPerEnd, pinnedLimit } from '../src/agent/pinned-budget.js';
import type { StatsSnapshot } from '../src/agent/stats.js';
import { formatStats } from '../src/format.js';
import { hasIpcLock, parseMemlock, type HostMemory } from '../src/host-memory.js';
import { idleStats } from './helpers/idle-stats.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

describe('pinned-memory budget', () => {
  it('an end pins its two rings and a mailbox page', () => {
    expect(pinnedBytesPerEnd(262144)).toBe(2 * 262144 + 4096);
    expect(pinnedBytesPerEnd(4096)).toBe(3 * 4096);
  });

  const host = (h: Partial<HostMemory>): HostMemory => ({ memTotal: 16 * GiB, memlockSoft: 'unlimited', ipcLock: false, ...h });

  it('defaults to a quarter of physical memory; VTOE_PINNED_MAX replaces it', () => {
    expect(pinnedLimit(0, host({}))).toBe(4 * GiB);
    expect(pinnedLimit(0, host({ memTotal: 768 * MiB }))).toBe(192 * MiB);
    expect(pinnedLimit(64 * MiB, host({}))).toBe(64 * MiB);
    expect(pinnedLimit(32 * GiB, host({}))).toBe(32 * GiB); // the operator's word, even above the default
  });

  it('stays under three quarters of a memlock limit that applies', () => {
    expect(pinnedLimit(0, host({ memlockSoft: 64 * MiB }))).toBe(48 * MiB);
    expect(pinnedLimit(1 * GiB, host({ memlockSoft: 8 * MiB }))).toBe(6 * MiB);
    expect(pinnedLimit(1 * MiB, host({ memlockSoft: 8 * MiB }))).toBe(1 * MiB);
    // CAP_IPC_LOCK: registration is not charged to RLIMIT_MEMLOCK; unreadable: not assumed
    expect(pinnedLimit(0, host({ memlockSoft: 8 * MiB, ipcLock: true }))).toBe(4 * GiB);
    expect(pinnedLimit(0, host({ memlockSoft: null }))).toBe(4 * GiB);
  });

  it('reserves what fits, refuses and counts what does not, and gives back', () => {
    const end = pinnedBytesPerEnd(65536);
    const b = new PinnedBudget(2 * end + end / 2);
    expect(b.reserve(end)).toBe(true);
    expect(b.reserve(end)).toBe(true);
    expect(b.reserve(end)).toBe(false);
    expect(b.snapshot()).toEqual({ bytes: 2 * end, limit: 2 * end + end / 2, peak: 2 * end, ends: 2, refused: 1 });
    b.release(end);
    expect(b.reserve(end)).toBe(true);
    b.release(end);
    b.release(end);
    b.release(0); // an end that held nothing
    expect(b.snapshot()).toEqual({ bytes: 0, limit: 2 * end + end / 2, peak: 2 * end, ends: 0, refused: 1 });
    expect(() => b.release(end)).toThrow(/releasing/);
  });

  it('shares the budget with the send buffers: an end fits only beside what they pin, and they get the rest', () => {
    const end = pinnedBytesPerEnd(65536);
    const b = new PinnedBudget(4 * end);
    expect(b.reserve(end, 0)).toBe(true);
    expect(b.unreserved).toBe(3 * end);
    // the send buffers pin an end and a half now: one more end fits beside them, a second not
    const staged = 1.5 * end;
    expect(b.reserve(end, staged)).toBe(true);
    expect(b.reserve(end, staged)).toBe(false);
    expect(b.unreserved).toBe(2 * end);
    b.release(end);
    expect(b.unreserved).toBe(3 * end);
  });

  it('a budget smaller than one end holds none', () => {
    const b = new PinnedBudget(pinnedBytesPerEnd(4096) - 1);
    expect(b.reserve(pinnedBytesPerEnd(4096))).toBe(false);
    expect(b.snapshot().refused).toBe(1);
  });
});

describe('host memory', () => {
  it('reads CAP_IPC_LOCK (bit 14) from CapEff', () => {
    expect(hasIpcLock('Name:\tnode\nCapEff:\t000001ffffffffff\n')).toBe(true); // root
    expect(hasIpcLock('CapEff:\t0000000000000000\n')).toBe(false);
    expect(hasIpcLock('CapEff:\t0000000000004000\n')).toBe(true);
    expect(hasIpcLock('CapEff:\t0000000000003fff\n')).toBe(false);
    expect(hasIpcLock('no such line')).toBe(false);
  });

  it('reads the memlock limit', () => {
    expect(parseMemlock('Max locked memory         65536                65536                bytes\n')).toEqual({ soft: 65536, hard: 65536 });
  });
});

describe('vtoe stats shows the budget', () => {
  const stats = (pinned: StatsSnapshot['pinned']): StatsSnapshot => idleStats({ pinned });

  it('as bytes of the limit, with the ends, the peak and the refusals', () => {
    const text = formatStats(stats({ bytes: 3 * 528384, limit: 192 * MiB, peak: 4 * 528384, ends: 3, refused: 7 }));
    expect(text).toContain('pinned for verbs rings: 1.5 MiB of 192 MiB by 3 connection ends (peak 2 MiB); ends refused for the budget: 7');
  });

  it('with the send buffers on a line of their own', () => {
    const text = formatStats(stats({ bytes: 0, limit: 192 * MiB, peak: 0, ends: 0, refused: 0,
      staged: { bytes: 3 * 262144, peak: 15 * 262144, refused: 2 } }));
    expect(text).toContain('pinned for send buffers (readers that lag): 768 KiB (peak 3.8 MiB); short of the budget: 2 times');
  });

  it('not at all without the verbs fabric', () => {
    expect(formatStats(stats(null))).not.toMatch(/pinned/);
  });
});
