import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, realpathSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { defineConfig } from 'vitest/config';
import { sanitizerOptions, sanitizing, withLibasan } from './src/sanitize.js';

// VTOE_SANITIZE=1: the workers (which load the sanitized addon) and every process they start
// run with libasan first in LD_PRELOAD, and each sanitizer report lands in one directory that
// test/helpers/sanitizer-reports.ts checks after every test file.  Writable by all: some
// programs run as another user (PostgreSQL as postgres).
function sanitizerEnv(): Record<string, string> {
  // Once per run: vitest evaluates this file more than once.
  let logDir = process.env.VTOE_SANITIZER_LOG_DIR;
  if (!logDir) {
    // A process that exits after the run ends makes its log directory again (the ASan runtime
    // does): empty ones of earlier runs go.
    for (const d of readdirSync(tmpdir()).filter((n) => n.startsWith('vtoe-sanitizer-'))) {
      try {
        rmdirSync(join(tmpdir(), d));
      } catch {
        // not empty (reports kept), or not ours
      }
    }
    logDir = mkdtempSync(join(tmpdir(), 'vtoe-sanitizer-'));
    chmodSync(logDir, 0o1777);
    process.env.VTOE_SANITIZER_LOG_DIR = logDir;
  }
  const preload = (process.env.LD_PRELOAD ?? '').split(/[:\s]+/).filter(Boolean);
  return { ...sanitizerOptions(logDir), LD_PRELOAD: withLibasan(preload).join(':'), VTOE_SANITIZER_LOG_DIR: logDir };
}

// python3 as the tests' programs find it on PATH may be a version manager's shim: pyenv's runs a
// shell script that starts some 40 processes, 0.3 s a start, 2 s with the sanitizers, which every
// one of them loads.  The interpreter it leads to goes first on PATH instead (the workers and
// everything they start inherit it): the same Python, one exec a start.
function interpreterFirstOnPath(): void {
  const path = process.env.PATH ?? '';
  let exe: string;
  try {
    exe = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
  } catch {
    return; // no python3: the tests that need it say so
  }
  if (!exe.startsWith('/') || !existsSync(exe)) return;
  const first = path.split(delimiter).find((d) => d && existsSync(join(d, 'python3')));
  if (!first || realpathSync(join(first, 'python3')) === realpathSync(exe)) return;
  process.env.PATH = `${dirname(exe)}${delimiter}${path}`;
}
interpreterFirstOnPath();

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Two cores: end-to-end tests start several processes each, so files run one at a time.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    ...(sanitizing ? {
      env: sanitizerEnv(),
      setupFiles: ['test/helpers/sanitizer-reports.ts'],
      globalSetup: ['test/helpers/sanitizer-global.ts'],
    } : {}),
  },
});
