#!/usr/bin/env node
// Builds the sanitized artifacts beside the normal ones, for VTOE_SANITIZE=1 (src/sanitize.ts):
// preload/libvtoe-asan.so, and the addons in build-asan/build/Release/ from the same sources
// and binding.gyp, compiled and linked with AddressSanitizer and UBSan.
//   node tools/build-asan.mjs        (or: npm run build:asan)
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build-asan');
const flags = ['-fsanitize=address,undefined', '-fno-sanitize-recover=undefined', '-fno-omit-frame-pointer'];

execFileSync('make', ['-C', join(root, 'preload'), 'asan'], { stdio: 'inherit' });

// binding.gyp with its paths seen from build-asan/ and the sanitizer flags added to each target.
const gyp = JSON.parse(readFileSync(join(root, 'binding.gyp'), 'utf8'));
const up = (p) => (p.startsWith('<') ? p : `../${p}`);
const fix = (t) => {
  if (t.sources) t.sources = t.sources.map(up);
  if (t.include_dirs) t.include_dirs = t.include_dirs.map(up);
  for (const c of t.conditions ?? []) for (const branch of c.slice(1)) fix(branch);
};
for (const t of gyp.targets) {
  fix(t);
  t.cflags = [...(t.cflags ?? []), ...flags];
  t.cflags_cc = [...(t.cflags_cc ?? []), ...flags];
  // UBSan linked in: only then does it write its reports where UBSAN_OPTIONS log_path says.
  t.ldflags = [...(t.ldflags ?? []), ...flags, '-static-libubsan'];
}
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'binding.gyp'), `${JSON.stringify(gyp, null, 2)}\n`);
// Through npx, as `npm install` builds the normal one: npm's configuration (nodedir) applies.
execFileSync('npx', ['--no-install', 'node-gyp', 'rebuild', '-C', out], { stdio: 'inherit', cwd: root });
console.log(`sanitized builds: ${join(root, 'preload', 'libvtoe-asan.so')}, ${join(out, 'build', 'Release')}/`);
