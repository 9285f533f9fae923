// Child processes for end-to-end tests, synchronised on the lines they print.
import { spawn, type ChildProcess } from 'node:child_process';
import { sanitizing, startsUnderAsan } from '../../src/sanitize.js';

export interface Proc {
  child: ChildProcess;
  /** Resolves with the first stdout line (seen so far or later) that matches. */
  waitLine(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
  kill(signal?: NodeJS.Signals): void;
}

const live = new Set<ChildProcess>();

/** Signals the child's whole process group: a grandchild that keeps stdout open would
 * otherwise hold 'close' back after the child was killed. */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    child.kill(signal);
  }
}

export function startProc(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Proc {
  // Its own process group, so that kill() reaches whatever it started.
  const child = spawn(cmd, args, { env, cwd, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  live.add(child);
  let out = '';
  let err = '';
  const waiters: Array<{ pattern: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];
  // Only whole lines: a pipe can hand over "GOT " before "hello\n", and /^GOT (.*)$/ would
  // match the part.  Once the child is gone, its unterminated last line counts too.
  let closed = false;
  const check = () => {
    const lines = closed ? out : out.slice(0, out.lastIndexOf('\n') + 1);
    for (const w of [...waiters]) {
      const m = lines.match(new RegExp(w.pattern.source, w.pattern.flags.includes('m') ? w.pattern.flags : `${w.pattern.flags}m`));
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; check(); });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    // 'close', not 'exit': only then has all of the child's output been read.
    child.once('close', (code, signal) => {
      live.delete(child);
      closed = true;
      check();
      resolve({ code, signal });
    });
  });
  return {
    child,
    exited,
    stdout: () => out,
    stderr: () => err,
    kill: (signal = 'SIGTERM') => { killGroup(child, signal); },
    waitLine(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern} from ${cmd}; stdout=${out} stderr=${err}`)), timeoutMs);
        const entry = { pattern, resolve: (m: RegExpMatchArray) => { clearTimeout(timer); resolve(m); } };
        waiters.push(entry);
        check();
        void exited.then(() => {
          if (waiters.includes(entry)) {
            clearTimeout(timer);
            reject(new Error(`${cmd} exited before printing ${pattern}; stdout=${out} stderr=${err}`));
          }
        });
      });
    },
  };
}

/** Kills whatever a test left running. */
export function killAll(): void {
  for (const child of live) killGroup(child, 'SIGKILL');
  live.clear();
}

/** Resolves once the child's stderr contains text (a ready line); rejects if it exits first. */
export function waitStderr(proc: Proc, text: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const check = () => (proc.stderr().includes(text) ? resolve() : undefined);
    proc.child.stderr!.on('data', check);
    proc.exited.then(() => reject(new Error(`exited before printing "${text}": ${proc.stderr()}`)));
    check();
  });
}

/** Is cmd on PATH? For tests that need an installed program and say so when it is missing. */
export { onPath as have } from '../../src/bench/process.js';

/**
 * Under VTOE_SANITIZE=1, why a test that runs these programs through the sanitized shim cannot
 * run here ('' if it can, and always without VTOE_SANITIZE): those that hang as soon as libasan
 * is preloaded, with or without the shim.
 */
export function asanBlocks(...cmds: string[]): string {
  if (!sanitizing) return '';
  const stuck = cmds.filter((c) => !startsUnderAsan(c));
  return stuck.length ? ` [${stuck.join(', ')} hang(s) with libasan preloaded, shim or not: not run with VTOE_SANITIZE=1]` : '';
}
