// Workloads below MPI: NetPIPE (NPopenmpi/NPmpich2 over MPI; NPtcp on sockets), sockperf and
// iperf3. The socket ones have no native mode: there is no faster transport for a plain socket.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toolPath } from '../paths.js';
import type { BenchWorkload, TrialContext, TrialResult } from './harness.js';
import { BENCH_MODES, type BenchMode } from './mpi-modes.js';
import type { SizePoint } from './series.js';
import { failed, runProcess, startServer } from './process.js';
import { mpiTrial, type MpiWorkloadOptions } from './workloads.js';

/** NetPIPE's output file: "bytes  Mbps  seconds" per line (seconds: half a round trip). */
export function parseNetpipeOutput(text: string): SizePoint[] {
  const points: SizePoint[] = [];
  for (const line of text.split('\n')) {
    const cells = line.trim().split(/\s+/).map(Number);
    if (cells.length < 3 || cells.slice(0, 3).some((c) => !Number.isFinite(c))) continue;
    const [bytes, mbps, seconds] = cells as [number, number, number];
    points.push({ bytes, usec: seconds * 1e6, mbPerSec: mbps / 8 });
  }
  return points;
}

export function netpipeMpiWorkload(o: MpiWorkloadOptions & { maxBytes: number }): BenchWorkload {
  return {
    name: 'netpipe',
    modes: BENCH_MODES,
    async run(ctx): Promise<TrialResult> {
      // NetPIPE measures between exactly two ranks
      const np = o.flavour === 'openmpi' ? 'NPopenmpi' : 'NPmpich2';
      const out = join(ctx.dir, 'np.out');
      const { launch, run } = mpiTrial({ ...o, ranks: 2 }, ctx, [np, '-p', '0', '-u', String(o.maxBytes), '-o', out]);
      const r = await run();
      let text = '';
      try { text = readFileSync(out, 'utf8'); } catch { /* reported below */ }
      const points = parseNetpipeOutput(text);
      const problems = failed(np, r);
      if (!points.length) problems.push(`${np} wrote no results`);
      return { series: points.length ? { NetPIPE: points } : {}, figures: {}, problems, transport: launch.transport };
    },
  };
}

const SOCKET_MODES: readonly BenchMode[] = ['offload', 'ipoib'];
const SOCKET_TRANSPORT = 'TCP sockets over lo';

export interface SocketWorkloadOptions {
  port: number;
  seconds: number;
  timeoutMs: number;
}

/** NPtcp: NetPIPE on plain TCP sockets, receiver and transmitter as two processes. */
export function netpipeTcpWorkload(o: SocketWorkloadOptions & { maxBytes: number }): BenchWorkload {
  return {
    name: 'nptcp',
    modes: SOCKET_MODES,
    async run(ctx: TrialContext): Promise<TrialResult> {
      const common = ['-P', String(o.port), '-p', '0', '-u', String(o.maxBytes)];
      const receiver = await startServer(['NPtcp', ...common], ctx.env, o.port);
      const out = join(ctx.dir, 'np.out');
      let r;
      try {
        r = await runProcess(['NPtcp', '-h', '127.0.0.1', ...common, '-o', out], { env: ctx.env, cwd: ctx.dir, timeoutMs: o.timeoutMs });
      } finally {
        await receiver.stop();
      }
      let text = '';
      try { text = readFileSync(out, 'utf8'); } catch { /* reported below */ }
      const points = parseNetpipeOutput(text);
      const problems = failed('NPtcp', r);
      if (!points.length) problems.push('NPtcp wrote no results');
      return { series: points.length ? { NPtcp: points } : {}, figures: {}, problems, transport: SOCKET_TRANSPORT };
    },
  };
}

/** Messages a second a sockperf ping-pong may reach (its default table holds 600 000 a second). */
export const SOCKPERF_MAX_MPS = 4_000_000;

/** The multiplexers the 64 B ping-pong is run through (sockperf -F). */
export const SOCKPERF_MUXES = ['select', 'poll', 'epoll'] as const;

/** sockperf ping-pong at several message sizes (latency: half the round trip), at 64 B through
 * select, poll and epoll, then throughput. */
export function sockperfWorkload(o: SocketWorkloadOptions & { sizes: number[] }): BenchWorkload {
  return {
    name: 'sockperf',
    modes: SOCKET_MODES,
    async run(ctx: TrialContext): Promise<TrialResult> {
      const common = ['--tcp', '-i', '127.0.0.1', '-p', String(o.port)];
      const server = await startServer(['sockperf', 'sr', ...common], ctx.env, o.port);
      const problems: string[] = [];
      const points: SizePoint[] = [];
      const figures: Record<string, number> = {};
      try {
        for (const size of o.sizes) {
          // sockperf sizes its table of send times for 600 000 messages a second unless told
          // more, and stops with "_seqN > m_maxSequenceNo" when a ping-pong goes faster
          const r = await runProcess(['sockperf', 'pp', ...common, '--mps', String(SOCKPERF_MAX_MPS), '-m', String(size), '-t', String(o.seconds)], { env: ctx.env, timeoutMs: o.timeoutMs });
          problems.push(...failed(`sockperf pp -m ${size}`, r));
          const p50 = /percentile 50\.000 =\s*([\d.]+)/.exec(r.stdout + r.stderr);
          if (p50) points.push({ bytes: size, usec: Number(p50[1]) });
          else problems.push(`sockperf pp -m ${size} printed no median`);
        }
        // 64 B through each multiplexer a client may wait in (sockperf takes -F only with a feed file)
        const feed = join(ctx.dir, 'sockperf-feed.txt');
        writeFileSync(feed, `T:127.0.0.1:${o.port}\n`);
        for (const mux of SOCKPERF_MUXES) {
          const r = await runProcess(['sockperf', 'pp', '-f', feed, '-F', mux, '--mps', String(SOCKPERF_MAX_MPS), '-m', '64', '-t', String(o.seconds)], { env: ctx.env, timeoutMs: o.timeoutMs });
          problems.push(...failed(`sockperf pp -F ${mux}`, r));
          const p50 = /percentile 50\.000 =\s*([\d.]+)/.exec(r.stdout + r.stderr);
          if (p50) figures[`sockperf_pp64_${mux}_us`] = Number(p50[1]);
          else problems.push(`sockperf pp -F ${mux} printed no median`);
        }
        const tp = await runProcess(['sockperf', 'tp', ...common, '-m', '65000', '-t', String(o.seconds)], { env: ctx.env, timeoutMs: o.timeoutMs });
        problems.push(...failed('sockperf tp', tp));
        const bw = /BandWidth is ([\d.]+) MBps/.exec(tp.stdout + tp.stderr);
        if (bw) figures.sockperf_tp_MBs = Number(bw[1]);
        else problems.push('sockperf tp printed no bandwidth');
      } finally {
        await server.stop();
      }
      return { series: points.length ? { 'sockperf ping-pong (p50)': points } : {}, figures, problems, transport: SOCKET_TRANSPORT };
    },
  };
}

/** iperf3 -P 4 for a few seconds: the received bandwidth. */
export function iperf3Workload(o: SocketWorkloadOptions): BenchWorkload {
  return {
    name: 'iperf3',
    modes: SOCKET_MODES,
    async run(ctx: TrialContext): Promise<TrialResult> {
      const server = await startServer(['iperf3', '-s', '-1', '-B', '127.0.0.1', '-p', String(o.port)], ctx.env, o.port);
      const problems: string[] = [];
      const figures: Record<string, number> = {};
      try {
        const r = await runProcess(['iperf3', '-c', '127.0.0.1', '-p', String(o.port), '-P', '4', '-t', String(o.seconds), '-J'],
          { env: ctx.env, timeoutMs: o.timeoutMs });
        problems.push(...failed('iperf3', r));
        try {
          const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
          figures.iperf3_Gbits = j.end.sum_received.bits_per_second / 1e9;
        } catch {
          problems.push('iperf3 printed no JSON result');
        }
      } finally {
        await server.stop();
      }
      return { series: {}, figures, problems, transport: SOCKET_TRANSPORT };
    },
  };
}

/** Short connections one after another — connect, one 64 B round trip, close — as HTTP
 * without keep-alive, a connection per job or MPI wire-up make them; each timed from
 * socket() to close() by vtoe-pingpong. */
export function connectWorkload(o: SocketWorkloadOptions & { connections: number }): BenchWorkload {
  return {
    name: 'connect',
    modes: SOCKET_MODES,
    async run(ctx: TrialContext): Promise<TrialResult> {
      const warmup = Math.min(200, Math.ceil(o.connections / 10));
      const tool = toolPath('vtoe-pingpong');
      const server = await startServer([tool, 'server', '--port', String(o.port), '--count', String(warmup + o.connections)], ctx.env, o.port);
      const problems: string[] = [];
      const figures: Record<string, number> = {};
      try {
        const r = await runProcess([tool, 'client', '--port', String(o.port), '--mode', 'connect', '--size', '64',
          '--iters', String(o.connections), '--warmup', String(warmup)], { env: ctx.env, timeoutMs: o.timeoutMs });
        problems.push(...failed('vtoe-pingpong client --mode connect', r));
        const m = /"conn_us":\{"min":[\d.]+,"p50":([\d.]+),"p90":[\d.]+,"p99":([\d.]+),"mean":([\d.]+)\}/.exec(r.stdout);
        if (m) {
          figures.connect_p50_us = Number(m[1]);
          figures.connect_p99_us = Number(m[2]);
          figures.connect_mean_us = Number(m[3]);
          // The client's own cost per connection over the timed ones; faults -1: not counted
          // (perf events refused).
          const c = /"per_conn":\{"cpu_us":([\d.]+),"faults":(-?[\d.]+),"switches":([\d.]+)\}/.exec(r.stdout);
          if (c) {
            figures.connect_client_cpu_us = Number(c[1]);
            if (Number(c[2]) >= 0) figures.connect_client_faults = Number(c[2]);
            figures.connect_client_switches = Number(c[3]);
          } else {
            problems.push('vtoe-pingpong --mode connect printed no per-connection costs');
          }
        } else {
          problems.push('vtoe-pingpong --mode connect printed no result');
        }
      } finally {
        await server.stop();
      }
      return { series: {}, figures, problems, transport: SOCKET_TRANSPORT };
    },
  };
}
