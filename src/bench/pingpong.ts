// Runs tools/vtoe-pingpong: a fresh server process, then a fresh client process, in one
// environment (kernel TCP, or the vtoe preload), and parses the client's JSON result.
import { spawn, type ChildProcess } from 'node:child_process';
import { VtoeError } from '../errors.js';
import { assertBuilt, toolPath } from '../paths.js';

export type PingPongMode = 'pp' | 'stream';

export interface RttStats {
  min: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}

export interface PingPongPpResult {
  mode: 'pp';
  /** Message size in bytes. */
  size: number;
  /** Timed round trips. */
  iters: number;
  /** Untimed round trips before them. */
  warmup: number;
  /** Round-trip times in microseconds. */
  rtt_us: RttStats;
  /** One-way latency in microseconds: rtt_us.p50 / 2. */
  latency_us: number;
}

export interface PingPongStreamResult {
  mode: 'stream';
  /** Bytes per write(). */
  size: number;
  /** Bytes sent, and confirmed by the server's count. */
  bytes: number;
  /** From the first write until the server's count arrived. */
  seconds: number;
  gbit_per_s: number;
  mib_per_s: number;
}

export type PingPongResult = PingPongPpResult | PingPongStreamResult;

export interface PingPongClientOptions {
  mode: PingPongMode;
  /** Message size (pp) or write size (stream), in bytes. */
  size: number;
  /** pp: timed round trips (tool default 10000). */
  iters?: number;
  /** pp: untimed round trips first (tool default 1000). */
  warmup?: number;
  /** stream: how long to send (tool default 2). */
  seconds?: number;
  /** Environment of the process: kernelEnv() or offloadEnv(). */
  env: NodeJS.ProcessEnv;
  /** Kill the processes and fail after this long. Default: 60 s plus the stream duration. */
  timeoutMs?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default: the built tools/bin/vtoe-pingpong. */
  program?: string;
}

export type PingPongOptions = PingPongClientOptions;

export type PingPongRole = 'server' | 'client';

/** A vtoe-pingpong process failed, or did not finish in time. */
export class PingPongError extends VtoeError {
  readonly role: PingPongRole;
  /** What happened, without the process's stderr (e.g. "exited with status 2"). */
  readonly how: string;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Everything the process wrote to stderr. */
  readonly stderr: string;
  constructor(
    role: PingPongRole,
    how: string,
    details: { exitCode?: number | null; signal?: NodeJS.Signals | null; stderr?: string; code?: string },
  ) {
    const stderr = details.stderr ?? '';
    const tail = stderr.trim() === '' ? '' : `: ${stderr.trim()}`;
    super(details.code ?? 'EPINGPONG', `vtoe-pingpong ${role} ${how}${tail}`);
    this.role = role;
    this.how = how;
    this.exitCode = details.exitCode ?? null;
    this.signal = details.signal ?? null;
    this.stderr = stderr;
  }
}

function defaultTimeoutMs(opts: PingPongClientOptions): number {
  return 60_000 + (opts.mode === 'stream' ? (opts.seconds ?? 2) * 1000 : 0);
}

function validate(opts: PingPongClientOptions): void {
  const posInt = (name: string, v: number | undefined, min: number): void => {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= min)) {
      throw new RangeError(`runPingPong: ${name} must be an integer >= ${min}, got ${v}`);
    }
  };
  if (opts.mode !== 'pp' && opts.mode !== 'stream') {
    throw new RangeError(`runPingPong: mode must be 'pp' or 'stream', got ${String(opts.mode)}`);
  }
  posInt('size', opts.size, 1);
  posInt('iters', opts.iters, 1);
  posInt('warmup', opts.warmup, 0);
  if (opts.seconds !== undefined && !(Number.isFinite(opts.seconds) && opts.seconds > 0)) {
    throw new RangeError(`runPingPong: seconds must be > 0, got ${opts.seconds}`);
  }
}

function clientArgs(opts: PingPongClientOptions, port: number): string[] {
  const args = ['client', '--port', String(port), '--host', opts.host ?? '127.0.0.1',
    '--mode', opts.mode, '--size', String(opts.size)];
  if (opts.mode === 'pp') {
    if (opts.iters !== undefined) args.push('--iters', String(opts.iters));
    if (opts.warmup !== undefined) args.push('--warmup', String(opts.warmup));
  } else if (opts.seconds !== undefined) {
    args.push('--seconds', String(opts.seconds));
  }
  return args;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(o: Record<string, unknown>, key: string, line: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new VtoeError('EPROTO', `vtoe-pingpong output has no numeric '${key}': ${line}`);
  }
  return v;
}

/** Parses and checks the client's JSON result line. */
export function parsePingPongOutput(line: string): PingPongResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw new VtoeError('EPROTO', `vtoe-pingpong printed something that is not JSON: ${line}`);
  }
  if (!isObject(parsed)) throw new VtoeError('EPROTO', `vtoe-pingpong output is not an object: ${line}`);
  if (parsed.mode === 'pp') {
    const rtt = parsed.rtt_us;
    if (!isObject(rtt)) throw new VtoeError('EPROTO', `vtoe-pingpong output has no rtt_us: ${line}`);
    return {
      mode: 'pp',
      size: num(parsed, 'size', line),
      iters: num(parsed, 'iters', line),
      warmup: num(parsed, 'warmup', line),
      rtt_us: {
        min: num(rtt, 'min', line),
        p50: num(rtt, 'p50', line),
        p90: num(rtt, 'p90', line),
        p99: num(rtt, 'p99', line),
        mean: num(rtt, 'mean', line),
      },
      latency_us: num(parsed, 'latency_us', line),
    };
  }
  if (parsed.mode === 'stream') {
    return {
      mode: 'stream',
      size: num(parsed, 'size', line),
      bytes: num(parsed, 'bytes', line),
      seconds: num(parsed, 'seconds', line),
      gbit_per_s: num(parsed, 'gbit_per_s', line),
      mib_per_s: num(parsed, 'mib_per_s', line),
    };
  }
  throw new VtoeError('EPROTO', `vtoe-pingpong output has an unknown mode: ${line}`);
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A spawned process with its whole output and a promise of its exit (after stdio closes). */
interface Proc {
  child: ChildProcess;
  exited: Promise<Exit>;
  stderr: () => string;
}

function start(
  program: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  role: PingPongRole,
  onStdoutLine?: (line: string) => void,
): Proc {
  const child = spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    if (onStdoutLine) {
      const parts = (partial + d).split('\n');
      partial = parts.pop()!;
      for (const line of parts) onStdoutLine(line);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const exited = new Promise<Exit>((resolve, reject) => {
    child.once('error', (err) => reject(new PingPongError(role, `could not be started (${err.message})`,
      { code: (err as NodeJS.ErrnoException).code ?? 'ESPAWN' })));
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  exited.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
  return { child, exited, stderr: () => stderr };
}

function kill(p: Proc | undefined): void {
  if (p && p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
}

function exitError(role: PingPongRole, e: Exit): PingPongError {
  const how = e.signal !== null ? `was killed by ${e.signal}` : `exited with status ${e.code}`;
  return new PingPongError(role, how, { exitCode: e.code, signal: e.signal, stderr: e.stderr });
}

/** Rejects after ms; the returned cancel() clears the timer. */
function deadline(ms: number, onExpire: () => Error): { promise: Promise<never>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onExpire()), ms);
  });
  promise.catch(() => {});
  return { promise, cancel: () => clearTimeout(timer) };
}

/** A running `vtoe-pingpong server` that has printed READY. */
export interface PingPongServer {
  port: number;
  pid: number;
  /** Resolves when the server has exited 0; rejects with PingPongError otherwise. */
  done: Promise<void>;
  kill(): void;
}

/**
 * Starts `vtoe-pingpong server` on an ephemeral port and resolves once it has printed
 * `READY <port>`. It serves `count` connections (default 1), then exits.
 */
export async function startPingPongServer(opts: {
  env: NodeJS.ProcessEnv;
  count?: number;
  bind?: string;
  program?: string;
  timeoutMs?: number;
}): Promise<PingPongServer> {
  const program = opts.program ?? assertBuilt(toolPath('vtoe-pingpong'));
  const args = ['server', '--bind', opts.bind ?? '127.0.0.1', '--port', '0', '--count', String(opts.count ?? 1)];
  let onReady: (port: number) => void = () => {};
  const ready = new Promise<number>((resolve) => { onReady = resolve; });
  const proc = start(program, args, opts.env, 'server', (line) => {
    const m = /^READY (\d+)$/.exec(line.trim());
    if (m) onReady(Number(m[1]));
  });
  const done = proc.exited.then((e) => {
    if (e.code !== 0) throw exitError('server', e);
  });
  done.catch(() => {});
  // Exiting before READY is a failure either way: report why.
  const exitedEarly = proc.exited.then((e): never => {
    throw e.code === 0
      ? new PingPongError('server', 'exited before printing READY', { exitCode: 0, stderr: e.stderr })
      : exitError('server', e);
  });
  exitedEarly.catch(() => {});

  const limit = deadline(opts.timeoutMs ?? 30_000, () =>
    new PingPongError('server', 'did not print READY in time', { code: 'ETIMEDOUT', stderr: proc.stderr() }));
  try {
    const port = await Promise.race([ready, exitedEarly, limit.promise]);
    return { port, pid: proc.child.pid!, done, kill: () => kill(proc) };
  } catch (err) {
    kill(proc);
    throw err;
  } finally {
    limit.cancel();
  }
}

/**
 * Runs `vtoe-pingpong client` against a port and resolves with its parsed result.
 * Rejects with PingPongError (exitCode 2 and the errno name in stderr when connect fails).
 */
export async function runPingPongClient(
  opts: PingPongClientOptions & { port: number },
): Promise<PingPongResult> {
  validate(opts);
  const program = opts.program ?? assertBuilt(toolPath('vtoe-pingpong'));
  const proc = start(program, clientArgs(opts, opts.port), opts.env, 'client');
  const limit = deadline(opts.timeoutMs ?? defaultTimeoutMs(opts), () =>
    new PingPongError('client', 'did not finish in time', { code: 'ETIMEDOUT', stderr: proc.stderr() }));
  try {
    const e = await Promise.race([proc.exited, limit.promise]);
    if (e.code !== 0) throw exitError('client', e);
    const line = e.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '').pop();
    if (line === undefined) throw new PingPongError('client', 'printed no result', { exitCode: 0, stderr: e.stderr });
    const result = parsePingPongOutput(line);
    if (result.mode !== opts.mode) {
      throw new VtoeError('EPROTO', `vtoe-pingpong client ran mode ${result.mode}, asked for ${opts.mode}`);
    }
    return result;
  } catch (err) {
    kill(proc);
    throw err;
  } finally {
    limit.cancel();
  }
}

/**
 * One trial: a fresh server process and a fresh client process, both in `opts.env`.
 * Resolves once both have exited 0; kills both on any failure or on the timeout.
 */
export function runPingPong(opts: PingPongOptions & { mode: 'pp' }): Promise<PingPongPpResult>;
export function runPingPong(opts: PingPongOptions & { mode: 'stream' }): Promise<PingPongStreamResult>;
export function runPingPong(opts: PingPongOptions): Promise<PingPongResult>;
export async function runPingPong(opts: PingPongOptions): Promise<PingPongResult> {
  validate(opts);
  const program = opts.program ?? assertBuilt(toolPath('vtoe-pingpong'));
  const timeoutMs = opts.timeoutMs ?? defaultTimeoutMs(opts);
  const startedAt = Date.now();
  const server = await startPingPongServer({ env: opts.env, program, timeoutMs });
  try {
    const remaining = (): number => Math.max(1, timeoutMs - (Date.now() - startedAt));
    const result = await runPingPongClient({ ...opts, program, port: server.port, timeoutMs: remaining() });
    const limit = deadline(remaining(), () =>
      new PingPongError('server', 'did not exit after the client finished', { code: 'ETIMEDOUT' }));
    try {
      await Promise.race([server.done, limit.promise]);
    } finally {
      limit.cancel();
    }
    return result;
  } catch (err) {
    server.kill();
    // A client failure is often caused by the server: say so if the server failed too.
    if (err instanceof PingPongError && err.role === 'client') {
      const serverErr = await server.done.then(() => undefined, (e: unknown) => e);
      if (serverErr instanceof PingPongError && serverErr.signal !== 'SIGKILL') {
        const serverWhy = serverErr.stderr.trim() === '' ? '' : `: ${serverErr.stderr.trim()}`;
        throw new PingPongError('client', `${err.how} (the server ${serverErr.how}${serverWhy})`, {
          exitCode: err.exitCode, signal: err.signal, stderr: err.stderr, code: err.code,
        });
      }
    }
    throw err;
  }
}
