// VTOE_SANITIZE=1 (vitest.config.ts): once every file has run, reports that came after the last
// file's check (a process that outlived its test) fail the run too; a clean directory goes.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

export default function setup(project: TestProject) {
  const dir = project.config.env.VTOE_SANITIZER_LOG_DIR;
  return () => {
    if (!dir || !existsSync(dir)) return;
    const late = readdirSync(dir).filter((f) => /^(asan|ubsan)\./.test(f));
    if (late.length) throw new Error(`sanitizer reports after the last test file: ${late.map((f) => join(dir, f)).join(', ')}`);
    if (readdirSync(dir).length === 0) rmSync(dir, { recursive: true });
    else console.error(`sanitizer reports are kept in ${join(dir, 'reported')}`);
  };
}
