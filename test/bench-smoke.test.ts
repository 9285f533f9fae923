// The CI's short `vtoe bench` runs: the MPI ping-pong with Open MPI in all three modes, one
// repetition, and its report; the socket workloads; the real IMB-MPI1 with Open MPI and MPICH.
// Needs Debian's openmpi-bin (and chromium for the PNGs), mpich, and tools/build-imb.sh's IMB.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { benchCommand, freePort } from '../src/bench/bench-command.js';
import { Agent } from '../src/agent/agent.js';
import { runBench, type TrialContext } from '../src/bench/harness.js';
import { runPingPong } from '../src/bench/pingpong.js';
import { IMB_BENCHMARKS } from '../src/bench/imb.js';
import { findChromium } from '../src/bench/report.js';
import { connectWorkload } from '../src/bench/socket-workloads.js';
import { kernelCallsWorkload } from '../src/bench/workloads.js';
import { toolPath } from '../src/paths.js';
import { repoRoot } from './helpers/cc.js';
import { have } from './helpers/proc.js';

const ompi = have('mpirun.openmpi') && have('mpicc.openmpi');

const dir = mkdtempSync(join(tmpdir(), 'vtoe-bench-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('vtoe bench smoke run', () => {
  // Across hosts the offload trials use each host's standing agent (harness.ts): the trials get
  // its socket, and what it offloaded for them is counted from its admin socket.
  it('offload trials on a standing agent: its socket, its counts; none running says so', async () => {
    const sock = join(dir, 'standing.sock');
    const pingpong = {
      name: 'pp', modes: ['offload', 'ipoib'] as const,
      async run(ctx: TrialContext) {
        const env = ctx.env.VTOE_AGENT_SOCKET;
        if (ctx.mode === 'offload' && env !== sock) throw new Error(`the trial's agent is ${env}, not the standing one`);
        await runPingPong({ mode: 'pp', size: 64, iters: 20, warmup: 2, env: ctx.env });
        return { series: {}, figures: {}, problems: [], transport: 'pingpong' };
      },
    };
    await expect(runBench({ workloads: [pingpong], modes: ['offload'], reps: 1, standingAgent: sock }))
      .rejects.toThrow(/no vtoe agent answers on .*standing\.sock: start `vtoe agent` on every host/);
    const agent = await Agent.start({ socketPath: sock });
    try {
      const r = await runBench({ workloads: [pingpong], modes: ['offload', 'ipoib'], reps: 2, standingAgent: sock });
      const offload = r[0]!.modes.find((m) => m.mode === 'offload')!;
      expect(offload.problems).toEqual([]);
      expect(offload.offloaded, JSON.stringify(offload.fallbacks)).toBe(2); // one per trial, nothing from ipoib
      expect(agent.stats().offloaded).toBe(2);
    } finally {
      await agent.stop();
    }
  }, 60_000);

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
      tcpInterface: 'lo', maxBytes: 65536, iters: 200, hpccMaxN: 400, seconds: 1, timeoutMs: 60_000,
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
    for (const mux of ['select', 'poll', 'epoll']) expect(sp!.modes[0]!.figures[`sockperf_pp64_${mux}_us`], mux).toBeGreaterThan(0);
    expect(ip!.modes[1]!.figures.iperf3_Gbits).toBeGreaterThan(0);
    expect(sp!.modes[0]!.offloaded, `fallbacks ${JSON.stringify(sp!.modes[0]!.fallbacks)}`).toBeGreaterThan(0);
    expect(ip!.modes[0]!.offloaded).toBe(5); // the control connection and four streams
  }, 180_000);

  it('connect: short connections in offload and ipoib, kernel TCP once the listener is known short', async () => {
    execFileSync('make', ['-s', '-C', join(repoRoot, 'tools')]);
    const w = connectWorkload({ port: await freePort(), seconds: 1, timeoutMs: 60_000, connections: 100 });
    const [res] = await runBench({ workloads: [w], modes: ['offload', 'ipoib'], reps: 1 });
    const [off, ipoib] = res!.modes;
    for (const m of [off!, ipoib!]) {
      expect(m.problems, m.mode).toEqual([]);
      expect(m.figures.connect_p50_us, m.mode).toBeGreaterThan(0);
      expect(m.figures.connect_p99_us, m.mode).toBeGreaterThanOrEqual(m.figures.connect_p50_us!);
      // the client's own cost per connection (page faults only where perf events are allowed)
      expect(m.figures.connect_client_cpu_us, m.mode).toBeGreaterThan(0);
      expect(m.figures.connect_client_switches, m.mode).toBeGreaterThanOrEqual(0);
      if (m.figures.connect_client_faults !== undefined) expect(m.figures.connect_client_faults, m.mode).toBeGreaterThanOrEqual(0);
    }
    // 100 timed and 10 warm-up connections: the first 8 offloaded, which makes the listener
    // short (VTOE_SHORT_BYTES), the others on kernel TCP (or offloaded again as a probe)
    const fellBack = off!.fallbacks?.['short-lived'] ?? 0;
    expect(off!.offloaded, `fallbacks ${JSON.stringify(off!.fallbacks)}`).toBeGreaterThanOrEqual(8);
    expect(fellBack).toBeGreaterThan(0);
    expect(off!.offloaded! + fellBack).toBe(110);
    expect(ipoib!.offloaded ?? 0).toBe(0);
  }, 120_000);

  // The real IMB-MPI1, built per MPI by tools/build-imb.sh (CI builds it from ../shared/third_party),
  // through offload and on kernel TCP: small messages and 200 repetitions, so each run takes a second.
  const imbSizes = [0, ...Array.from({ length: 13 }, (_, i) => 2 ** i)]; // -msglog 0:12
  for (const flavour of ['openmpi', 'mpich'] as const) {
    const mpi = flavour === 'openmpi' ? ompi : have('mpirun.mpich');
    const imb = toolPath(`IMB-MPI1.${flavour}`);
    const built = existsSync(imb);
    const needs = !mpi ? ` [needs ${flavour === 'openmpi' ? 'openmpi-bin' : 'mpich'}]` : !built ? ' [needs tools/build-imb.sh]' : '';
    it.skipIf(!mpi || !built)(`imb: the real IMB-MPI1 with ${flavour}, offload and ipoib${needs}`, async () => {
      const r = await benchCommand({
        workloads: ['imb'], modes: ['offload', 'ipoib'], mpi: flavour, reps: 1, ranks: 2, tcpInterface: 'lo', maxBytes: 4096,
        iters: 200, hpccMaxN: 400, timeoutMs: 60_000,
      });
      const w = r.results[0]!;
      expect(w.modes.map((m) => m.mode)).toEqual(['offload', 'ipoib']);
      for (const m of w.modes) {
        expect(m.problems, m.mode).toEqual([]);
        expect(Object.keys(m.series), m.mode).toEqual([...IMB_BENCHMARKS]);
        for (const name of IMB_BENCHMARKS) {
          // Allreduce sums floats: IMB skips the sizes below one (4 B) after 0
          const sizes = name === 'Allreduce' ? imbSizes.filter((b) => b === 0 || b >= 4) : imbSizes;
          expect(m.series[name]!.map((p) => p.bytes), `${m.mode} ${name}`).toEqual(sizes);
          for (const p of m.series[name]!.filter((q) => q.bytes > 0)) expect(p.usec, `${m.mode} ${name} ${p.bytes} B`).toBeGreaterThan(0);
        }
      }
      const off = w.modes[0]!;
      expect(off.offloaded, `fallbacks ${JSON.stringify(off.fallbacks)}`).toBeGreaterThan(0);
      // offload against ipoib: better, worse, or "1.00× (same)"
      expect(r.markdown).toMatch(/\| PingPong \| latency at 1 B \(µs\) \| [\d.]+ \| [\d.]+× (better|worse|\(same\))/);
    }, 120_000);
  }

  // Kernel calls per round trip of a 0-byte ping-pong, counted on the ranks. On kernel TCP each rank
  // makes one send and one receive call per round trip (and polls while it waits). Through
  // offload no byte and no doorbell goes through the kernel while the ranks spin: no send or
  // receive call at all (how often a rank sleeps, and so polls in the kernel, depends on load).
  const counters = have('strace') || have('perf');
  it.skipIf(!ompi || !counters)(`syscalls: kernel calls per round trip with Open MPI, offload and ipoib${!ompi ? ' [needs openmpi-bin]' : !counters ? ' [needs linux-perf or strace]' : ''}`, async () => {
    execFileSync('make', ['-s', '-C', join(repoRoot, 'tools')]);
    const r = await benchCommand({
      workloads: ['syscalls'], modes: ['offload', 'ipoib'], mpi: 'openmpi', reps: 1, ranks: 2, tcpInterface: 'lo', maxBytes: 1,
      iters: 200, hpccMaxN: 400, timeoutMs: 120_000, report: join(dir, 'syscalls'),
    });
    const [off, ipoib] = r.results[0]!.modes;
    for (const m of [off!, ipoib!]) expect(m.problems, m.mode).toEqual([]);
    expect(off!.offloaded, `fallbacks ${JSON.stringify(off!.fallbacks)}`).toBeGreaterThan(0);
    for (const rank of [0, 1]) {
      expect(ipoib!.figures[`kcalls_rt_rank${rank}`], `rank ${rank}`).toBeGreaterThanOrEqual(2);
      for (const call of ['readv', 'writev']) expect(Math.abs(ipoib!.figures[`kcalls_rt_rank${rank}:${call}`]! - 1), `rank ${rank} ${call}`).toBeLessThan(0.05);
    }
    expect(Number.isFinite(off!.figures.kcalls_rt)).toBe(true);
    for (const rank of [0, 1]) {
      for (const call of ['readv', 'writev', 'sendto', 'recvfrom', 'read', 'write']) {
        expect(off!.figures[`kcalls_rt_rank${rank}:${call}`] ?? 0, `offload rank ${rank} ${call}`).toBeLessThan(0.05);
      }
    }
    expect(r.markdown).toContain('### kernel calls per round trip');
    expect(r.markdown).toMatch(/^\| ipoib \| [\d.]+ \| [\d.]+ \(poll [\d.]+, .*readv 1\.00/m);
    expect(existsSync(join(dir, 'syscalls', 'summary.md'))).toBe(true);
    console.log(r.markdown.split('\n').filter((l) => /^\| (offload|ipoib) \| [-\d.]+ \|/.test(l)).join('\n'));
  }, 180_000);

  const mpich = have('mpirun.mpich') && have('mpicc.mpich');
  it.skipIf(!mpich || !have('strace'))(`syscalls: strace counts MPICH's ranks${!mpich ? ' [needs mpich libmpich-dev]' : !have('strace') ? ' [needs strace]' : ''}`, async () => {
    execFileSync('make', ['-s', '-C', join(repoRoot, 'tools')]);
    const w = kernelCallsWorkload({ flavour: 'mpich', ranks: 2, tcpInterface: 'lo', timeoutMs: 120_000, counter: 'strace', roundTrips: [200, 5200] });
    const [res] = await runBench({ workloads: [w], modes: ['offload', 'ipoib'], reps: 1 });
    const [off, ipoib] = res!.modes;
    for (const m of [off!, ipoib!]) expect(m.problems, m.mode).toEqual([]);
    expect(off!.offloaded, `fallbacks ${JSON.stringify(off!.fallbacks)}`).toBeGreaterThan(0);
    expect(ipoib!.transport).toContain('strace -f -c, 200 and 5200 round trips');
    // UCX's tcp transport: one sendto and one recvfrom per message
    for (const rank of [0, 1]) {
      for (const call of ['sendto', 'recvfrom']) expect(Math.abs(ipoib!.figures[`kcalls_rt_rank${rank}:${call}`]! - 1), `rank ${rank} ${call}`).toBeLessThan(0.05);
    }
    expect(Number.isFinite(off!.figures.kcalls_rt)).toBe(true);
  }, 180_000);
});
