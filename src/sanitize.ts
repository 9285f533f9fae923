// The sanitizer builds (VTOE_SANITIZE=1): the shim and the addons compiled with AddressSanitizer
// and UBSan (preload/libvtoe-asan.so, build-asan/; `npm run build:asan`) are used instead of the
// normal ones.  Every process that loads one needs libasan loaded first (LD_PRELOAD): programs
// get it from offloadEnv(), the test workers from vitest.config.ts.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export const sanitizing = process.env.VTOE_SANITIZE === '1';

let libasan: string | undefined;

/** gcc's libasan, the runtime the sanitized artifacts were linked with. */
export function libasanPath(): string {
  if (libasan) return libasan;
  let path = '';
  try {
    path = execFileSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
  } catch {
    // reported below
  }
  if (!path.startsWith('/')) throw new Error('VTOE_SANITIZE=1 needs gcc\'s libasan: install gcc (Debian: build-essential)');
  libasan = path;
  return path;
}

/** Is libasan loaded in this process (preloaded, as it must be before a sanitized addon)? */
export function asanLoaded(): boolean {
  return /\/libasan\.so/.test(readFileSync('/proc/self/maps', 'utf8'));
}

/** Before a sanitized addon is loaded: without libasan first, it would abort the process. */
export function assertAsanLoaded(addon: string): void {
  if (sanitizing && !asanLoaded()) {
    throw new Error(`VTOE_SANITIZE=1: ${addon} is built with AddressSanitizer, so node must start with libasan: ` +
      `LD_PRELOAD=${libasanPath()} ASAN_OPTIONS=detect_leaks=0 (VTOE_SANITIZE=1 npx vitest sets both for its workers)`);
  }
}

/**
 * ASAN_OPTIONS and UBSAN_OPTIONS for the processes of a sanitized run: stop at the first report
 * (abort, so that whoever waits on the process sees it fail) and, with logDir, write each
 * process's report to logDir/asan.PID or ubsan.PID, where a test can look for them.  Leaks are
 * not reported: node and the programs the tests run do not free everything before they exit.
 * The runtime installs no signal handlers of its own: a program's dispositions stay its own
 * (the shim restarts a call a signal interrupted only if every caught signal has SA_RESTART).
 */
export function sanitizerOptions(logDir?: string): { ASAN_OPTIONS: string; UBSAN_OPTIONS: string } {
  const log = (name: string) => (logDir ? `:log_path=${logDir}/${name}` : '');
  return {
    ASAN_OPTIONS: `detect_leaks=0:abort_on_error=1:halt_on_error=1:handle_segv=0:handle_sigbus=0:handle_sigfpe=0${log('asan')}`,
    UBSAN_OPTIONS: `halt_on_error=1:print_stacktrace=1${log('ubsan')}`,
  };
}

const startsSeen = new Map<string, boolean>();

/**
 * Does the program start at all with libasan preloaded?  Some do not here (curl, PostgreSQL's
 * initdb and postgres, perl: they hang in glibc's setlocale under the ASan runtime, with or
 * without the shim), and a sanitized run skips the tests that need them.
 */
export function startsUnderAsan(cmd: string, args: string[] = ['--version']): boolean {
  const key = [cmd, ...args].join(' ');
  let ok = startsSeen.get(key);
  if (ok === undefined) {
    const r = spawnSync(cmd, args, { env: { ...process.env, LD_PRELOAD: libasanPath(), ASAN_OPTIONS: 'detect_leaks=0' },
      timeout: 5000, stdio: 'ignore' });
    ok = !r.error && r.signal === null;
    startsSeen.set(key, ok);
  }
  return ok;
}

/** LD_PRELOAD with libasan first (once), then the others in their order. */
export function withLibasan(preload: string[]): string[] {
  const asan = libasanPath();
  return [asan, ...preload.filter((p) => p !== asan)];
}
