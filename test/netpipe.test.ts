import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseNetpipeOutput } from '../src/bench/socket-workloads.js';

// NPopenmpi (Debian's netpipe-openmpi 3.7.2) -u 1048576 -o FILE, Open MPI's TCP BTL over lo, this machine.
const sample = readFileSync(join(__dirname, 'fixtures', 'netpipe', 'npopenmpi-tcp-lo.out'), 'utf8');

describe('NetPIPE output', () => {
  it('reads bytes, Mbit/s and seconds into sizes, one-way microseconds and MB/s', () => {
    const pts = parseNetpipeOutput(sample);
    expect(pts.length).toBe(106);
    expect(pts[0]!.bytes).toBe(1);
    expect(pts[0]!.usec).toBeCloseTo(10.07, 2);
    expect(pts[0]!.mbPerSec).toBeCloseTo(0.757315 / 8, 6);
    expect(pts[pts.length - 1]!.bytes).toBe(1048579);
    for (let i = 1; i < pts.length; i++) expect(pts[i]!.bytes).toBeGreaterThanOrEqual(pts[i - 1]!.bytes);
  });

  it('skips lines that are not three numbers', () => {
    expect(parseNetpipeOutput('garbage\n  8 1.5\n\n')).toEqual([]);
  });
});
