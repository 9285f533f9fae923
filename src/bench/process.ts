// Processes the bench starts: run to the end, or serve until stopped; and finding programs.
// Everything is asynchronous: the offload modes' agent runs in this process and must keep serving.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { VtoeError } from '../errors.js';

/** Is cmd on PATH? */
export function onPath(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface ProcessOutcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs argv to its end (its process group killed after timeoutMs). */
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

