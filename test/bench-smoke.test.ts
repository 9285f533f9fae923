// The CI's short `vtoe bench` run: the MPI ping-pong with Open MPI in all three modes, one
// repetition, and its report. Needs Debian's openmpi-bin (and chromium for the PNGs).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { benchCommand } from '../src/bench/bench-command.js';
import { findChromium } from '../src/bench/report.js';
import { repoRoot } from './helpers/cc.js';
import { have } from './helpers/proc.js';

const ompi = have('mpirun.openmpi') && have('mpicc.openmpi');
const dir = mkdtempSync(join(tmpdir(), 'vtoe-bench-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('vtoe bench smoke run', () => {
  it.skipIf(!ompi)(`pingpong with Open MPI: offload, ipoib and native, with a report${ompi ? '' : ' [needs openmpi-bin libopenmpi-dev]'}`, async () => {
    execFileSync('make', ['-s', '-C', join(repoRoot, 'tools')]);
    const progress: string[] = [];
    const r = await benchCommand({
      workloads: ['pingpong'], modes: ['offload', 'ipoib', 'native'], mpi: 'openmpi', reps: 1, ranks: 2,
      tcpInterface: 'lo', maxBytes: 65536, iters: 200, hpccMaxN: 400, report: join(dir, 'report'), timeoutMs: 120_000,
      onProgress: (l) => progress.push(l),
    });
    expect(progress).toHaveLength(3);
    const pp = r.results[0]!;
    expect(pp.modes.map((m) => m.mode)).toEqual(['offload', 'ipoib', 'native']);
    for (const m of pp.modes) {
      expect(m.problems, m.mode).toEqual([]);
      expect(m.series.PingPong!.map((p) => p.bytes)).toEqual([0, 1, 4, 16, 64, 256, 1024, 4096, 16384, 65536]);
    }
    expect(pp.modes[0]!.offloaded, `fallbacks ${JSON.stringify(pp.modes[0]!.fallbacks)}`).toBeGreaterThan(0);
    expect(r.markdown).toMatch(/\| PingPong \| latency at 1 B \(µs\) \| [\d.]+ \| [\d.]+× \w+/);
    expect(r.markdown).toContain("native: Open MPI's vader shared-memory BTL");
    for (const f of ['results.json', 'summary.md', 'report.html']) expect(existsSync(join(dir, 'report', f)), f).toBe(true);
    if (findChromium()) expect(r.report!.pngs).toEqual(['pingpong-pingpong-latency.png', 'pingpong-pingpong-bandwidth.png']);
    const saved = JSON.parse(readFileSync(join(dir, 'report', 'results.json'), 'utf8')) as { results: unknown[] };
    expect(saved.results).toHaveLength(1);
  }, 180_000);

  const sockets = have('sockperf') && have('iperf3') && have('NPtcp');
  it.skipIf(!sockets)(`NPtcp, sockperf and iperf3 in offload and ipoib${sockets ? '' : ' [needs netpipe-tcp, sockperf, iperf3]'}`, async () => {
    const r = await benchCommand({
      workloads: ['nptcp', 'sockperf', 'iperf3'], modes: ['offload', 'ipoib', 'native'], mpi: 'openmpi', reps: 1, ranks: 2,
      tcpInterface: 'lo', maxBytes: 65536, iters: 200, hpccMaxN: 400, timeoutMs: 60_000,
    });
    const [np, sp, ip] = r.results;
    expect(np!.modes.map((m) => m.mode)).toEqual(['offload', 'ipoib']);
    for (const m of np!.modes) expect(m.series.NPtcp!.at(-1)!.bytes, m.mode).toBe(65536);
    expect(np!.modes[0]!.offloaded, `fallbacks ${JSON.stringify(np!.modes[0]!.fallbacks)}`).toBeGreaterThan(0);
    // below MPI there is no native transport: those workloads run in offload and ipoib only
    expect(sp!.modes.map((m) => m.mode)).toEqual(['offload', 'ipoib']);
    for (const m of [...np!.modes, ...sp!.modes, ...ip!.modes]) expect(m.problems, `${m.mode}`).toEqual([]);
    expect(sp!.modes[0]!.series['sockperf ping-pong (p50)']!.map((p) => p.bytes)).toEqual([16, 256, 4096, 65000]);
    expect(sp!.modes[0]!.figures.sockperf_tp_MBs).toBeGreaterThan(0);
    expect(ip!.modes[1]!.figures.iperf3_Gbits).toBeGreaterThan(0);
    expect(sp!.modes[0]!.offloaded, `fallbacks ${JSON.stringify(sp!.modes[0]!.fallbacks)}`).toBeGreaterThan(0);
    expect(ip!.modes[0]!.offloaded).toBe(5); // the control connection and four streams
  }, 180_000);

  // IMB-MPI1 is not packaged by Debian, so this runs the imb workload's plumbing (mpirun, the
  // arguments, the parser) with a stand-in that replays a real IMB output from rank 0.
  it.skipIf(!ompi)(`imb: the runner with a stand-in for IMB-MPI1${ompi ? '' : ' [needs openmpi-bin]'}`, async () => {
    const fixture = join(repoRoot, 'test', 'fixtures', 'imb', 'openmpi-tcp-lo-np2.txt');
    const argsFile = join(dir, 'imb-args.txt');
    const standIn = join(dir, 'IMB-MPI1');
    writeFileSync(standIn, `#!/bin/sh\n[ "\${OMPI_COMM_WORLD_RANK:-0}" = 0 ] || exit 0\necho "$*" > '${argsFile}'\ncat '${fixture}'\n`, { mode: 0o755 });
    const r = await benchCommand({
      workloads: ['imb'], modes: ['ipoib'], mpi: 'openmpi', reps: 1, ranks: 2, tcpInterface: 'lo', maxBytes: 65536,
      iters: 200, hpccMaxN: 400, imb: standIn, timeoutMs: 60_000,
    });
    expect(readFileSync(argsFile, 'utf8').trim()).toBe('PingPong PingPing Sendrecv Exchange Allreduce -msglog 0:16 -npmin 2');
    const ipoib = r.results[0]!.modes[0]!;
    expect(ipoib.problems).toEqual([]);
    expect(Object.keys(ipoib.series)).toEqual(['PingPong', 'PingPing', 'Sendrecv', 'Exchange', 'Allreduce']);
    expect(ipoib.series.PingPong![4]).toEqual({ bytes: 1048576, usec: 118, mbPerSec: 8886.27 });
  }, 60_000);
});
