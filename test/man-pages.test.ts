// The man pages as man renders them, against the tables they are written from: every command,
// every setting with its doc, the policy grammar and profiles; and `vtoe --help` from the same
// command table. A setting or command added without reaching the pages fails here.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS, formatUsage } from '../src/commands.js';
import { CONFIG_TABLE } from '../src/config.js';
import { manPages } from '../src/man-pages.js';
import { POLICY_GRAMMAR } from '../src/policy.js';
import { PROFILES } from '../src/profiles.js';
import { repoRoot } from './helpers/cc.js';

const exec = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'vtoe-man-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const haveMan = spawnSync('sh', ['-c', 'command -v man && command -v groff']).status === 0;
const pages = new Map(manPages('0.0.0-test').map((p) => [p.name, p]));

/** The page as man renders it, on one long line per paragraph, whitespace collapsed. */
function rendered(name: string): string {
  const page = pages.get(name)!;
  const file = join(dir, `${name}.${page.section}`);
  writeFileSync(file, page.text);
  // groff's own warnings (-ww) first: a page that renders with warnings is a broken page
  const warnings = spawnSync('groff', ['-man', '-ww', '-z', '-Tutf8', file], { encoding: 'utf8' });
  expect(warnings.stderr, name).toBe('');
  const r = spawnSync('man', ['-l', file], { env: { ...process.env, MANWIDTH: '80', MAN_KEEP_FORMATTING: '' }, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.replace(/‐\n\s*/g, '').replace(/\s+/g, ' ');
}
const flat = (s: string) => s.replace(/\s+/g, ' ').trim();

describe.skipIf(!haveMan)('man pages (skipped without man and groff: apt-get install man-db groff-base)', () => {
  it('vtoe(1) has every command with its synopsis and doc, and every setting with its doc', () => {
    const text = rendered('vtoe');
    expect(text).toMatch(/^VTOE\(1\) User Commands VTOE\(1\) NAME vtoe - /);
    for (const c of COMMANDS) expect(text, c.name).toContain(flat(`${c.name} ${c.synopsis.join(' ')} ${c.doc}`));
    for (const e of CONFIG_TABLE) expect(text, e.env).toContain(flat(e.doc));
    for (const e of CONFIG_TABLE) expect(text, e.env).toMatch(new RegExp(`${e.env} \\(default: `));
  });

  it("vtoe-agent(8) documents the service, the signals and every setting the agent reads", () => {
    const text = rendered('vtoe-agent');
    expect(text).toMatch(/^VTOE-AGENT\(8\) System Administration /);
    for (const word of ['SIGTERM', 'Type=notify', 'READY=1', 'vtoe unit --system', 'systemctl --user enable --now vtoe']) {
      expect(text, word).toContain(word);
    }
    for (const e of CONFIG_TABLE) {
      if (e.readBy === 'shim') expect(text, e.env).not.toContain(`${e.env} (default`);
      else expect(text, e.env).toContain(flat(e.doc));
    }
  });

  it('vtoe-policy(5) has the grammar and every profile with its rules', () => {
    const text = rendered('vtoe-policy');
    for (const [term, definition] of POLICY_GRAMMAR) expect(text, term).toContain(flat(`${term} ${definition}`));
    for (const [name, p] of Object.entries(PROFILES)) {
      expect(text, name).toContain(flat(p.doc));
      for (const rule of p.rules.split('\n')) expect(text, rule).toContain(flat(rule));
    }
  });

  it('escapes what roff would read as requests or escapes', () => {
    const text = pages.get('vtoe')!.text;
    expect(text.split('\n').filter((l) => /^[.']/.test(l) && !/^\.(TH|SH|PP|TP|B|I|nf|fi|RS|RE)\b/.test(l))).toEqual([]);
  });
});

describe('vtoe --help', () => {
  it('is the command table, as the man page is', async () => {
    const { stdout } = await exec(process.execPath, [join(repoRoot, 'bin', 'vtoe.js'), '--help']);
    expect(stdout).toBe(`${formatUsage()}\n`);
    for (const c of COMMANDS) expect(stdout).toMatch(new RegExp(`^  ${c.name}\\b`, 'm'));
  });
});

describe('the README', () => {
  // The README explains the settings and commands in its own words; it must not miss any.
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  it('lists every setting in its configuration table and shows every command', () => {
    const table = readme.slice(readme.indexOf('### Configuration'), readme.indexOf('## How it works'));
    expect(CONFIG_TABLE.filter((e) => !table.includes(`\`${e.env}\``)).map((e) => e.env)).toEqual([]);
    expect([...new Set(COMMANDS.map((c) => c.name))].filter((n) => !readme.includes(`vtoe ${n}`))).toEqual([]);
  });
});
