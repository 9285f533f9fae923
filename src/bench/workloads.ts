// The workloads `vtoe bench` runs. Each trial starts its own process tree (asynchronously: the
// offload modes' agent runs in this process and must keep serving).
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { VtoeError } from '../errors.js';
import { assertBuilt, toolPath } from '../paths.js';
import type { BenchWorkload, TrialContext, TrialResult } from './harness.js';
import { hpccInput, parseHpccOutput } from './hpcc.js';
import { IMB_BENCHMARKS, parseImbOutput } from './imb.js';
import { BENCH_MODES, mpiLaunch, type MpiFlavour } from './mpi-modes.js';

export interface ProcessOutcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs argv to its end (killed after timeoutMs), without blocking the event loop. */
export function runProcess(argv: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number }): Promise<ProcessOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => {
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
    }, opts.timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); reject(new VtoeError('ENOENT', `cannot start ${argv[0]}: ${err.message}`)); });
    child.once('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** Is something listening on this TCP port (IPv4 or IPv6)? Read from /proc/net/tcp{,6}. */
function listeningOn(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = readFileSync(f, 'utf8'); } catch { continue; }
    // local_address is the 2nd column, st the 4th; 0A is LISTEN
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[1]?.endsWith(hex.trim()) && cols[3] === '0A') return true;
    }
  }
  return false;
}

export interface RunningServer {
  stop(): Promise<void>;
}

/** Starts a server and resolves once its port listens (the ready signal), or rejects. */
export async function startServer(argv: string[], env: NodeJS.ProcessEnv, port: number, timeoutMs = 15_000): Promise<RunningServer> {
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: 'ignore', detached: true });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let exited = false;
  void closed.then(() => { exited = true; });
  const kill = (sig: NodeJS.Signals) => { try { process.kill(-child.pid!, sig); } catch { /* gone */ } };
  const deadline = Date.now() + timeoutMs;
  while (!listeningOn(port)) {
    if (exited || Date.now() > deadline) {
      kill('SIGKILL');
      throw new VtoeError('ETIMEDOUT', `${argv[0]} did not listen on port ${port}${exited ? ' (it exited)' : ` within ${timeoutMs} ms`}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    async stop() {
      kill('SIGTERM');
      const t = setTimeout(() => kill('SIGKILL'), 5000);
      await closed;
      clearTimeout(t);
    },
  };
}

export function failed(what: string, r: ProcessOutcome): string[] {
  if (r.code === 0) return [];
  const tail = r.stderr.trim().split('\n').slice(-3).join(' | ');
  return [`${what} exited with ${r.code ?? 'a signal (timed out?)'}${tail ? `: ${tail}` : ''}`];
}

export interface MpiWorkloadOptions {
  flavour: MpiFlavour;
  ranks: number;
  tcpInterface: string;
  timeoutMs: number;
}

function mpiTrial(o: MpiWorkloadOptions, ctx: TrialContext, program: string[]) {
  const launch = mpiLaunch({ flavour: o.flavour, mode: ctx.mode, ranks: o.ranks, tcpInterface: o.tcpInterface });
  return { launch, run: () => runProcess([...launch.argv, ...program], { env: { ...ctx.env, ...launch.env }, cwd: ctx.dir, timeoutMs: o.timeoutMs }) };
}

/** The project's MPI ping-pong (tools/bin/vtoe-mpi-pingpong.FLAVOUR): needs only the MPI. */
export function mpiPingPongWorkload(o: MpiWorkloadOptions & { maxBytes: number; iters: number }): BenchWorkload {
  return {
    name: 'pingpong',
    modes: BENCH_MODES,
    async run(ctx): Promise<TrialResult> {
      const bin = assertBuilt(toolPath(`vtoe-mpi-pingpong.${o.flavour}`));
      const { launch, run } = mpiTrial(o, ctx, [bin, String(o.maxBytes), String(o.iters)]);
      const r = await run();
      const problems = failed('the MPI ping-pong', r);
      if (!/^# checksum \d+ ok$/m.test(r.stdout)) problems.push('the ping-pong did not confirm its checksum');
      return { series: parseImbOutput(r.stdout).series, figures: {}, problems, transport: launch.transport };
    },
  };
}

/** IMB-MPI1 (not packaged by Debian: --imb PATH). */
export function imbWorkload(o: MpiWorkloadOptions & { imb: string; maxLog2: number }): BenchWorkload {
  return {
    name: 'imb',
    modes: BENCH_MODES,
    async run(ctx): Promise<TrialResult> {
      const { launch, run } = mpiTrial(o, ctx, [o.imb, ...IMB_BENCHMARKS, '-msglog', `0:${o.maxLog2}`, '-npmin', String(o.ranks)]);
      const r = await run();
      const parsed = parseImbOutput(r.stdout);
      const problems = failed('IMB-MPI1', r);
      for (const b of IMB_BENCHMARKS) if (!parsed.series[b]?.length) problems.push(`IMB printed no ${b} table`);
      return { series: parsed.series, figures: {}, problems, transport: launch.transport };
    },
  };
}

/** The hpcc binary for an MPI: Debian's (Open MPI), or tools/build-hpcc-mpich.sh's. */
export function hpccBinary(flavour: MpiFlavour): string {
  return flavour === 'openmpi' ? 'hpcc' : toolPath('hpcc.mpich');
}

/** HPCC, with hpccinf.txt sized to this machine. */
export function hpccWorkload(o: MpiWorkloadOptions & { maxN: number }): BenchWorkload {
  return {
    name: 'hpcc',
    modes: BENCH_MODES,
    async run(ctx): Promise<TrialResult> {
      // HPL's matrix in at most a quarter of the memory, and N capped so a run stays short
      writeFileSync(join(ctx.dir, 'hpccinf.txt'), hpccInput({ ranks: o.ranks, memoryBytes: totalmem() / 4, maxN: o.maxN }));
      const { launch, run } = mpiTrial(o, ctx, [hpccBinary(o.flavour)]);
      const r = await run();
      let text = '';
      try { text = readFileSync(join(ctx.dir, 'hpccoutf.txt'), 'utf8'); } catch { /* reported below */ }
      const s = parseHpccOutput(text);
      const figures: Record<string, number> = {};
      for (const [k, v] of Object.entries(s.figures)) figures[k] = v;
      return { series: {}, figures, problems: [...failed('hpcc', r), ...s.problems], transport: launch.transport };
    },
  };
}
