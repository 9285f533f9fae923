// How far a connection's rings may grow for the buffers its two ends set (src/agent/ring-sizing.ts).
import { describe, expect, it } from 'vitest';
import { RING } from '../src/abi.js';
import {
  LINUX_BUFFER_DEFAULTS, LINUX_BUFFER_LIMITS, buffersSet, largeAreaFor, parseBufferDefaults, parseBufferLimits, ringLargeFor,
} from '../src/agent/ring-sizing.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const ring = 256 * KiB;
const configured = 4 * MiB;
// A socket nobody sized: the kernel's initial sizes (tcp_wmem[1], tcp_rmem[1]).
const untouched = { sndbuf: LINUX_BUFFER_DEFAULTS.sndbuf, rcvbuf: LINUX_BUFFER_DEFAULTS.rcvbuf };
// getsockopt's answer after setsockopt(v): twice v
const set = (sndbuf: number, rcvbuf: number) => ({ sndbuf: 2 * sndbuf, rcvbuf: 2 * rcvbuf });

describe('ringLargeFor', () => {
  it('keeps the configured large area for ends that set nothing, or set less than it holds', () => {
    expect(ringLargeFor(untouched, untouched, ring, configured)).toBe(configured);
    expect(ringLargeFor(set(64 * KiB, 64 * KiB), untouched, ring, configured)).toBe(configured);
    // a reader's 1 MiB (2 MiB kept) beside a writer autotuned to 4 MiB: 6 MiB, more than 4 MiB + 256 KiB
    expect(ringLargeFor(untouched, set(0, 1 * MiB), ring, configured)).toBe(8 * MiB);
  });

  it('holds the writer\'s send buffer and the reader\'s receive buffer, in either direction', () => {
    // client writes 8 MiB kept into a server that keeps 8 MiB: 16 MiB
    expect(ringLargeFor(set(4 * MiB, 0), set(0, 4 * MiB), ring, configured)).toBe(16 * MiB);
    // the other direction: the server's send buffer and the client's receive buffer
    expect(ringLargeFor(set(0, 4 * MiB), set(4 * MiB, 0), ring, configured)).toBe(16 * MiB);
    // the client's receive buffer counts for what the server writes: 4 MiB autotuned + 2 MiB
    expect(ringLargeFor(set(0, 1 * MiB), untouched, ring, configured)).toBe(8 * MiB);
    // and a reader's small one adds nothing: the ring's small area holds it
    expect(ringLargeFor(set(0, 32 * KiB), untouched, ring, configured)).toBe(configured);
  });

  it('never exceeds the largest ring, and never goes below the configured area', () => {
    expect(ringLargeFor(set(256 * MiB, 256 * MiB), set(256 * MiB, 256 * MiB), ring, configured)).toBe(RING.max);
    expect(ringLargeFor(set(4 * MiB, 0), set(0, 4 * MiB), ring, 32 * MiB)).toBe(32 * MiB);
    // a ring as large as rings get cannot grow at all
    expect(ringLargeFor(set(4 * MiB, 0), set(0, 4 * MiB), RING.max, 0)).toBe(0);
  });

  it('grows rings an operator made fixed (0) only for buffers a program set, as the kernel honours them', () => {
    expect(ringLargeFor(untouched, untouched, ring, 0)).toBe(0);
    expect(ringLargeFor(set(64 * KiB, 0), set(0, 64 * KiB), ring, 0)).toBe(0); // 256 KiB fits the ring
    expect(ringLargeFor(set(1 * MiB, 0), set(0, 1 * MiB), ring, 0)).toBe(4 * MiB);
  });

  it('is a power of two above the ring size whenever it is not the configured value', () => {
    for (const s of [4 * KiB, ring, 4 * MiB, 32 * MiB]) {
      for (const b of [0, 100_000, 3 * MiB, 9 * MiB, 40 * MiB]) {
        const large = ringLargeFor(set(b, b), set(b, b), s, 0);
        if (large === 0) continue;
        expect(large & (large - 1)).toBe(0);
        expect(large).toBeGreaterThan(s);
        expect(large).toBeLessThanOrEqual(RING.max);
        // it holds both buffers, unless capped
        expect(large === RING.max || s + large >= 4 * b).toBe(true);
      }
    }
  });

  it('takes the host\'s initial sizes from the sysctl files, else Linux\'s', () => {
    expect(parseBufferDefaults('4096\t32768\t4194304\n', '4096 262144 6291456')).toEqual({ sndbuf: 32768, rcvbuf: 262144 });
    expect(parseBufferDefaults(undefined, 'garbage')).toEqual(LINUX_BUFFER_DEFAULTS);
  });
});

describe('largeAreaFor: room for buffers a program may set once connected', () => {
  it('keeps the configured area where the host\'s limits ask no more (Linux\'s defaults: 208 KiB)', () => {
    expect(largeAreaFor(ring, configured, LINUX_BUFFER_LIMITS)).toBe(configured);
  });

  it('reserves twice each limit, as the kernel keeps a buffer set to it, in a power of two', () => {
    // 4 MiB limits: 8 MiB sent + 8 MiB received, less the small area: 16 MiB
    expect(largeAreaFor(ring, configured, { wmemMax: 4 * MiB, rmemMax: 4 * MiB })).toBe(16 * MiB);
    // 3 MiB + 3 MiB kept twice: 12 MiB less 256 KiB: the next power of two
    expect(largeAreaFor(ring, configured, { wmemMax: 3 * MiB, rmemMax: 3 * MiB })).toBe(16 * MiB);
    expect(largeAreaFor(ring, configured, { wmemMax: 1 * MiB, rmemMax: 4 * MiB })).toBe(16 * MiB);
  });

  it('stops at the largest ring, and never goes below the configured area', () => {
    expect(largeAreaFor(ring, configured, { wmemMax: 1 << 30, rmemMax: 1 << 30 })).toBe(RING.max);
    expect(largeAreaFor(ring, 32 * MiB, { wmemMax: 4 * MiB, rmemMax: 4 * MiB })).toBe(32 * MiB);
    expect(largeAreaFor(RING.max, RING.max, { wmemMax: 1 << 30, rmemMax: 1 << 30 })).toBe(RING.max);
  });

  it('reserves nothing when rings are configured not to grow (only buffers set before connecting count then)', () => {
    expect(largeAreaFor(ring, 0, { wmemMax: 64 * MiB, rmemMax: 64 * MiB })).toBe(0);
  });

  it('reads the limits from the sysctl files, else Linux\'s', () => {
    expect(parseBufferLimits('4194304\n', '16777216')).toEqual({ wmemMax: 4 * MiB, rmemMax: 16 * MiB });
    expect(parseBufferLimits(undefined, '-1')).toEqual(LINUX_BUFFER_LIMITS);
  });
});

describe('buffersSet: what the agent writes into the ring headers', () => {
  it('is what the program set (half what the kernel keeps), 0 for a buffer left at the kernel\'s initial size', () => {
    expect(buffersSet(untouched)).toEqual({ sndbuf: 0, rcvbuf: 0 });
    expect(buffersSet(set(4 * MiB, 1 * MiB))).toEqual({ sndbuf: 4 * MiB, rcvbuf: 1 * MiB });
    // at or below the initial size reads as not set: the large area's autotuned fill holds it
    expect(buffersSet(set(0, 64 * KiB))).toEqual({ sndbuf: 0, rcvbuf: 0 });
    expect(buffersSet(set(64 * KiB, 0), { sndbuf: 262144, rcvbuf: 262144 })).toEqual({ sndbuf: 0, rcvbuf: 0 });
  });
});
