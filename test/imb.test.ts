import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IMB_BENCHMARKS, parseImbOutput } from '../src/bench/imb.js';

const fixture = (name: string) => readFileSync(join(__dirname, 'fixtures', 'imb', name), 'utf8');

describe('IMB-MPI1 output', () => {
  it('reads every benchmark of a real run over kernel TCP (test/fixtures/imb/README.md)', () => {
    const r = parseImbOutput(fixture('openmpi-tcp-lo-np2.txt'));
    expect(Object.keys(r.series)).toEqual([...IMB_BENCHMARKS]);
    for (const name of IMB_BENCHMARKS) {
      expect(r.processes[name]).toBe(2);
      expect(r.series[name]!.map((p) => p.bytes)).toEqual([0, 8, 1024, 65536, 1048576, 4194304]);
    }
    expect(r.series.PingPong![0]).toEqual({ bytes: 0, usec: 5.21, mbPerSec: 0 });
    expect(r.series.PingPong![4]).toEqual({ bytes: 1048576, usec: 118.0, mbPerSec: 8886.27 });
    // Sendrecv and Exchange report t_avg; Allreduce has no bandwidth column
    expect(r.series.Sendrecv![3]).toEqual({ bytes: 65536, usec: 54.53, mbPerSec: 2403.75 });
    expect(r.series.Exchange![5]).toEqual({ bytes: 4194304, usec: 3253.01, mbPerSec: 5157.21 });
    expect(r.series.Allreduce![4]).toEqual({ bytes: 1048576, usec: 243.46 });
  });

  it('reads the shared-memory run and the default lengths', () => {
    const vader = parseImbOutput(fixture('openmpi-vader-np2.txt'));
    expect(vader.series.PingPong!.length).toBe(6);
    const def = parseImbOutput(fixture('openmpi-vader-np2-default-lengths.txt'));
    const sizes = def.series.PingPong!.map((p) => p.bytes);
    expect(sizes[0]).toBe(0);
    expect(sizes[sizes.length - 1]).toBe(4194304);
    expect(sizes.length).toBe(24); // 0 and 2^0 .. 2^22
  });

  it("reads the project's MPI ping-pong, which prints IMB's PingPong table", () => {
    const out = [
      '# Benchmarking PingPong', '# #processes = 2', '#bytes #repetitions t[usec] Mbytes/sec',
      '0 1000 3.10 0.00', '1 1000 3.20 0.31', '1048576 10 120.50 8701.79', '# checksum 1234 ok', '',
    ].join('\n');
    expect(parseImbOutput(out).series).toEqual({
      PingPong: [
        { bytes: 0, usec: 3.1, mbPerSec: 0 },
        { bytes: 1, usec: 3.2, mbPerSec: 0.31 },
        { bytes: 1048576, usec: 120.5, mbPerSec: 8701.79 },
      ],
    });
  });

  it('ignores truncated rows and text outside the tables', () => {
    const out = '# Benchmarking PingPong\n#bytes #repetitions t[usec] Mbytes/sec\n0 1000 3.10\nhello 1 2 3\n';
    expect(parseImbOutput(out).series).toEqual({});
  });
});
