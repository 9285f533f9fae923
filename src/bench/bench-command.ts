// `vtoe bench`: the library behind the CLI command. Picks the workloads, runs them in the
// modes, prints the summary and writes the report.
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, cpus, release } from 'node:os';
import { resolve } from 'node:path';
import { VtoeError } from '../errors.js';
import { toolPath } from '../paths.js';
import { runBench, type BenchWorkload, type WorkloadResult } from './harness.js';
import { BENCH_MODES, MPI_FLAVOURS, mpiLaunch, modeLabel, type BenchMode, type MpiFlavour } from './mpi-modes.js';
import { IMB_BENCHMARKS, type ImbBenchmark } from './imb.js';
import { summaryMarkdown, writeReport, type ReportInput, type WrittenReport } from './report.js';
import { onPath } from './process.js';
import { connectWorkload, iperf3Workload, netpipeMpiWorkload, netpipeTcpWorkload, sockperfWorkload } from './socket-workloads.js';
import type { SyscallCounter } from './kernel-calls.js';
import { hpccBinary, hpccWorkload, imbWorkload, kernelCallsWorkload, mpiPingPongWorkload, pickSyscallCounter } from './workloads.js';

export const BENCH_WORKLOADS = ['pingpong', 'imb', 'hpcc', 'netpipe', 'nptcp', 'sockperf', 'iperf3', 'connect', 'syscalls'] as const;
export type BenchWorkloadName = (typeof BENCH_WORKLOADS)[number];

export interface BenchCommandOptions {
  workloads: BenchWorkloadName[];
  modes: BenchMode[];
  mpi: MpiFlavour;
  reps: number;
  ranks: number;
  /** The interface the TCP modes use; default lo on one host, required across hosts. */
  tcpInterface?: string;
  /** Across hosts: where the ranks go, one after another; the first must be this host. */
  hosts?: string[];
  /** Across hosts: the rsh-compatible program that starts the MPI's daemons (default ssh). */
  launcher?: string;
  /** Across hosts: the standing agent's socket on every host (the offload trials' agent). */
  agentSocket?: string;
  maxBytes: number;
  iters: number;
  hpccMaxN: number;
  /** sockperf and iperf3: seconds each of their runs lasts (default 2). */
  seconds?: number;
  imb?: string;
  /** IMB's benchmarks to run; default all of IMB_BENCHMARKS. */
  imbBenchmarks?: ImbBenchmark[];
  /** syscalls: perf stat or strace; default perf where it can count system calls, else strace. */
  syscallCounter?: SyscallCounter;
  report?: string;
  /** false: the report without its PNGs (no Chromium run), for `vtoe bench --from` to draw later. */
  charts?: boolean;
  timeoutMs: number;
  onProgress?: (line: string) => void;
}

function listOf<T extends string>(text: string, allowed: readonly T[], what: string): T[] {
  const items = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!allowed.includes(i as T)) throw new VtoeError('EINVAL', `${what} '${i}' is unknown: use ${allowed.join(', ')}`);
  if (!items.length) throw new VtoeError('EINVAL', `no ${what} given: use ${allowed.join(', ')}`);
  return items as T[];
}

export const parseWorkloads = (s: string) => listOf(s, BENCH_WORKLOADS, 'workload');
export const parseModes = (s: string) => listOf(s, BENCH_MODES, 'mode');
export const parseImbBenchmarks = (s: string) => listOf(s, IMB_BENCHMARKS, 'IMB benchmark');
export function parseFlavour(s: string): MpiFlavour {
  return listOf(s, MPI_FLAVOURS, 'MPI')[0]!;
}

/**
 * The IMB-MPI1 to run for an MPI: --imb PATH, else tools/build-imb.sh's build for that MPI
 * (tools/bin/IMB-MPI1.FLAVOUR), else IMB-MPI1 on PATH; null when there is none.
 */
export function findImb(flavour: MpiFlavour, given?: string): string | null {
  if (given) return given;
  const built = toolPath(`IMB-MPI1.${flavour}`);
  if (existsSync(built)) return built;
  return onPath('IMB-MPI1') ? 'IMB-MPI1' : null;
}

/** A TCP port nobody listens on now (the kernel's pick). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Workloads that are plain TCP programs, with no MPI in them. */
const SOCKET_WORKLOADS: ReadonlySet<string> = new Set(['nptcp', 'sockperf', 'connect', 'iperf3']);

/** Across hosts the MPI places the ranks and carries their output back; these need more. */
const ONE_HOST_WORKLOADS: ReadonlySet<string> = new Set([...SOCKET_WORKLOADS, 'syscalls']);

export function parseHosts(text: string): string[] {
  const hosts = text.split(',').map((h) => h.trim()).filter(Boolean);
  if (hosts.length < 2) throw new VtoeError('EINVAL', '--hosts needs at least two hosts, this one first: --hosts HERE,THERE');
  for (const h of hosts) if (!/^[\w.:-]+$/.test(h)) throw new VtoeError('EINVAL', `--hosts: '${h}' is not a host name or address`);
  return hosts;
}

/** The interface, checked against where the ranks go. */
export function tcpInterfaceOf(o: Pick<BenchCommandOptions, 'hosts' | 'tcpInterface' | 'workloads'>): string {
  if (!o.hosts) return o.tcpInterface ?? 'lo';
  const local = o.workloads.filter((w) => ONE_HOST_WORKLOADS.has(w));
  if (local.length) throw new VtoeError('EINVAL', `across hosts only MPI workloads run (pingpong, imb, hpcc, netpipe): drop ${local.join(', ')}`);
  if (!o.tcpInterface || o.tcpInterface === 'lo') {
    throw new VtoeError('EINVAL', '--hosts needs --iface: the interface the hosts reach each other on (ib0 for IPoIB)');
  }
  return o.tcpInterface;
}

export async function buildWorkloads(o: BenchCommandOptions): Promise<BenchWorkload[]> {
  // a launcher named by a path is found from any directory the trials run in
  const launcher = o.launcher?.includes('/') ? resolve(o.launcher) : o.launcher;
  const across = o.hosts ? { hosts: o.hosts, launcher } : {};
  const mpi = { flavour: o.mpi, ranks: o.ranks, tcpInterface: tcpInterfaceOf(o), timeoutMs: o.timeoutMs, ...across };
  const requireMpi = () => {
    if (!onPath(`mpirun.${o.mpi}`)) {
      throw new VtoeError('ENOENT', `mpirun.${o.mpi} is not installed: apt-get install ${o.mpi === 'openmpi' ? 'openmpi-bin libopenmpi-dev' : 'mpich libmpich-dev'}`);
    }
  };
  const socket = { seconds: o.seconds ?? 2, timeoutMs: o.timeoutMs };
  const built: BenchWorkload[] = [];
  for (const w of o.workloads) built.push(await (async (): Promise<BenchWorkload> => {
    switch (w) {
      case 'pingpong':
        requireMpi();
        return mpiPingPongWorkload({ ...mpi, maxBytes: o.maxBytes, iters: o.iters });
      case 'imb': {
        requireMpi();
        const imb = findImb(o.mpi, o.imb);
        if (!imb) {
          throw new VtoeError('ENOENT', `IMB-MPI1 is not packaged by Debian: run tools/build-imb.sh [mpi-benchmarks.tar.gz|DIR] to build ${toolPath(`IMB-MPI1.${o.mpi}`)}, or give --imb PATH`);
        }
        if (o.imb && !existsSync(o.imb) && !onPath(o.imb)) throw new VtoeError('ENOENT', `--imb ${o.imb}: no such program`);
        return imbWorkload({ ...mpi, imb, maxLog2: Math.round(Math.log2(Math.max(1, o.maxBytes))), iters: o.iters, benchmarks: o.imbBenchmarks });
      }
      case 'hpcc':
        requireMpi();
        if (o.mpi === 'openmpi' && !onPath('hpcc')) throw new VtoeError('ENOENT', 'hpcc is not installed: apt-get install hpcc');
        if (o.mpi === 'mpich' && !existsSync(hpccBinary('mpich'))) {
          throw new VtoeError('ENOENT', "Debian's hpcc is linked with Open MPI: build one for MPICH with tools/build-hpcc-mpich.sh");
        }
        return hpccWorkload({ ...mpi, maxN: o.hpccMaxN });
      case 'netpipe': {
        requireMpi();
        const np = o.mpi === 'openmpi' ? 'NPopenmpi' : 'NPmpich2';
        if (!onPath(np)) throw new VtoeError('ENOENT', `${np} is not installed: apt-get install netpipe-${o.mpi === 'openmpi' ? 'openmpi' : 'mpich2'}`);
        return netpipeMpiWorkload({ ...mpi, maxBytes: o.maxBytes });
      }
      case 'nptcp':
        if (!onPath('NPtcp')) throw new VtoeError('ENOENT', 'NPtcp is not installed: apt-get install netpipe-tcp');
        return netpipeTcpWorkload({ ...socket, port: await freePort(), maxBytes: o.maxBytes });
      case 'sockperf':
        if (!onPath('sockperf')) throw new VtoeError('ENOENT', 'sockperf is not installed: apt-get install sockperf');
        return sockperfWorkload({ ...socket, port: await freePort(), sizes: [16, 256, 4096, 65000] });
      case 'connect':
        return connectWorkload({ ...socket, port: await freePort(), connections: 2000 });
      case 'iperf3':
        if (!onPath('iperf3')) throw new VtoeError('ENOENT', 'iperf3 is not installed: apt-get install iperf3');
        return iperf3Workload({ ...socket, port: await freePort() });
      case 'syscalls':
        // kernel calls per round trip of a 0-byte ping-pong, per rank (workloads.ts, kernel-calls.ts)
        requireMpi();
        return kernelCallsWorkload({ ...mpi, counter: await pickSyscallCounter(o.syscallCounter) });
    }
  })());
  return built;
}

const runsMpi = (o: BenchCommandOptions) => o.workloads.some((w) => !SOCKET_WORKLOADS.has(w));

export function modeLabels(o: BenchCommandOptions): Partial<Record<BenchMode, string>> {
  const labels: Partial<Record<BenchMode, string>> = {};
  const mpi = runsMpi(o);
  const tcpInterface = o.tcpInterface ?? 'lo';
  for (const mode of o.modes) {
    if (!mpi && mode === 'native') continue; // sockets have no native mode
    const { transport } = mpi ? mpiLaunch({ flavour: o.mpi, mode, ranks: o.ranks, tcpInterface, hosts: o.hosts })
      : { transport: `TCP sockets over ${tcpInterface}` };
    const fabric = o.hosts ? 'the verbs fabric between the hosts\' agents'
      : tcpInterface === 'lo' ? `shm rings between the ${mpi ? 'ranks' : 'processes'}` : 'its fabric';
    labels[mode] = modeLabel(mode, transport, fabric);
  }
  return labels;
}

/** Writes the report again from a run's results.json (e.g. after a change to the charts). */
export async function reportFromResults(resultsJson: string, dir: string): Promise<{ markdown: string; report: WrittenReport }> {
  const input = JSON.parse(readFileSync(resultsJson, 'utf8')) as ReportInput;
  if (!Array.isArray(input.results)) throw new VtoeError('EINVAL', `${resultsJson} is not a vtoe bench results.json`);
  return { markdown: summaryMarkdown(input), report: await writeReport(dir, input) };
}

export async function benchCommand(o: BenchCommandOptions): Promise<{ markdown: string; results: WorkloadResult[]; report?: WrittenReport }> {
  const workloads = await buildWorkloads(o);
  const results = await runBench({
    workloads, modes: o.modes, reps: o.reps, onProgress: o.onProgress, agentProfile: 'mpi',
    // every host must find the trials' directory (MPICH's ranks start in it): the current one,
    // shared between the hosts as an MPI job's is
    ...(o.hosts ? { standingAgent: o.agentSocket, scratchDir: process.cwd() } : {}),
  });
  const input: ReportInput = {
    title: `vtoe bench: ${o.workloads.join(', ')} ${runsMpi(o) ? `with ${o.mpi === 'openmpi' ? 'Open MPI' : 'MPICH'}, ${o.ranks} ranks` : 'over TCP sockets'}${o.hosts ? ` on ${o.hosts.join(', ')}` : ''}`,
    host: `${hostname()}: ${cpus().length} cores, Linux ${release()}${o.hosts ? ` (launching host of ${o.hosts.length})` : ''}`,
    generatedAt: new Date().toISOString(),
    reps: o.reps,
    results,
    labels: modeLabels(o),
  };
  const report = o.report ? await writeReport(o.report, input, { charts: o.charts }) : undefined;
  return { markdown: summaryMarkdown(input), results, report };
}
