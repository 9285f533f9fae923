// VTOE_SANITIZE=1 (vitest.config.ts): after each test file, the sanitizer reports any process
// wrote (ASan, UBSan: one file per process in VTOE_SANITIZER_LOG_DIR) fail that file, so a report
// from a program, a shim or an agent is never missed even when its process' death is.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const dir = process.env.VTOE_SANITIZER_LOG_DIR;

afterAll(() => {
  if (!dir || !existsSync(dir)) return;
  const reports = readdirSync(dir).filter((f) => /^(asan|ubsan)\./.test(f));
  if (!reports.length) return;
  // Moved aside, so the next file starts clean, and kept for whoever reads the failure.
  const seen = join(dir, 'reported');
  mkdirSync(seen, { recursive: true });
  const text = reports.map((f) => {
    const body = readFileSync(join(dir, f), 'utf8');
    renameSync(join(dir, f), join(seen, f));
    return `--- ${join(seen, f)}\n${body}`;
  }).join('\n');
  throw new Error(`sanitizer reports (${reports.length}):\n${text}`);
});
