// Builds a small C program for a test, once per source change, into test/c/bin/.
import { execFileSync } from 'node:child_process';
import { mkdirSync, statSync, existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const repoRoot = resolve(__dirname, '..', '..');

export function buildC(name: string, sources: string[], extraFlags: string[] = []): string {
  const outDir = join(repoRoot, 'test', 'c', 'bin');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, name);
  const srcPaths = sources.map((s) => resolve(repoRoot, s));
  // The project's headers (the ABI among them) count too: a layout change must rebuild.
  const includeDir = join(repoRoot, 'include');
  const headers = readdirSync(includeDir).map((h) => join(includeDir, h));
  const newest = Math.max(...[...srcPaths, ...headers].map((s) => statSync(s).mtimeMs));
  if (!existsSync(out) || statSync(out).mtimeMs < newest) {
    // Headers count for the rebuild check only.
    execFileSync('cc', ['-std=gnu11', '-O2', '-Wall', '-Werror', '-I', join(repoRoot, 'include'),
      '-o', out, ...srcPaths.filter((p) => !p.endsWith('.h')), '-pthread', ...extraFlags], { stdio: 'inherit' });
  }
  return out;
}
