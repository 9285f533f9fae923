// Writes the man pages (man/man1/vtoe.1, man/man5/vtoe-policy.5, man/man8/vtoe-agent.8) from
// the declared tables, through dist/ (run after tsc: `npm run prepare` does both).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { manPages } from '../dist/man-pages.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2] ?? join(root, 'man');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
for (const page of manPages(version)) {
  const dir = join(out, `man${page.section}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${page.name}.${page.section}`), page.text);
}
