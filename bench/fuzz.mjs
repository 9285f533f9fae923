#!/usr/bin/env node
// The fuzz bench: builds the harnesses in fuzz/ (libFuzzer, clang-14; the verbs wire's Node
// loop needs dist/), then runs each target in a fresh process, one at a time, from a copy of its
// seed corpus, and prints one row per target.  Exits non-zero on any crash, hang (an input over
// --timeout seconds, or a target over --max-seconds) or sanitizer report.
//   node bench/fuzz.mjs [--runs 1000000] [--timeout 10] [--max-seconds 3600] [--targets a,b] [--keep]
// Its scratch directory (outputs, new corpus units) is removed after a clean run unless --keep;
// after a failure it stays, with the inputs that failed.
//                       [--seed N] [--no-build]
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const all = ['ctl_request', 'ctl_cmsg', 'shim_reply', 'shim_ring', 'verbs_rx', 'verbs_wire'];
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000000' },
    timeout: { type: 'string', default: '10' },
    'max-seconds': { type: 'string', default: '3600' },
    targets: { type: 'string', default: all.join(',') },
    seed: { type: 'string', default: '1' },
    'no-build': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const targets = values.targets.split(',').filter(Boolean);
for (const t of targets) if (!all.includes(t)) throw new Error(`unknown target ${t}: one of ${all.join(', ')}`);

if (!values['no-build']) {
  execFileSync('make', ['-C', join(root, 'fuzz'), '-s'], { stdio: 'inherit' });
  execFileSync('npx', ['--no-install', 'tsc', '-p', join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root });
}
const { formatTable } = await import('../dist/text-table.js');

const work = mkdtempSync(join(tmpdir(), 'vtoe-fuzz-'));
// The harnesses carry their own sanitizer runtime, and report to stderr, where they are counted.
const env = { ...process.env, UBSAN_OPTIONS: 'print_stacktrace=1' };
delete env.LD_PRELOAD;
delete env.ASAN_OPTIONS;

/** One target in a process of its own: its output and what it amounted to. */
function runTarget(name) {
  const dir = join(work, name);
  const corpus = join(dir, 'corpus');
  mkdirSync(corpus, { recursive: true });
  cpSync(join(root, 'fuzz', 'corpus', name), corpus, { recursive: true });
  const opts = [`-runs=${values.runs}`, `-timeout=${values.timeout}`, `-seed=${values.seed}`, '-print_final_stats=1',
    `-artifact_prefix=${dir}/`, corpus];
  const [cmd, args] = name === 'verbs_wire'
    ? [process.execPath, [join(root, 'fuzz', 'verbs_wire.mjs'), ...opts]]
    : [join(root, 'fuzz', 'bin', name), opts];
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { out += d; });
    let killed = false;
    const guard = setTimeout(() => { killed = true; child.kill('SIGKILL'); }, Number(values['max-seconds']) * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      const secs = Number(process.hrtime.bigint() - started) / 1e9;
      writeFileSync(join(dir, 'output.txt'), out);
      resolve({ name, secs, code, signal, killed, out, dir });
    });
  });
}

function count(text, re) {
  return (text.match(re) ?? []).length;
}

/** A row from a target's output: libFuzzer's final statistics, or its last status line. */
function summarise(r) {
  const stat = /stat::number_of_executed_units:\s*(\d+)/.exec(r.out);
  const last = [...r.out.matchAll(/^#(\d+)\s/gm)].at(-1);
  const units = stat ? Number(stat[1]) : last ? Number(last[1]) : 0;
  const reports = count(r.out, /ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:/g);
  const hangs = count(r.out, /ERROR: libFuzzer: timeout/g) + (r.killed ? 1 : 0);
  const crashes = count(r.out, /ERROR: libFuzzer: (deadly signal|out-of-memory|fuzz target exited)|ERROR: verbs_wire:|ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer)/g);
  const artifacts = readdirSync(r.dir).filter((f) => /^(crash|timeout|oom|leak)-/.test(f));
  const failed = crashes > 0 || hangs > 0 || reports > 0 || r.code !== 0 || artifacts.length > 0;
  return { units, crashes, hangs, reports, failed, artifacts };
}

const rows = [['target', 'inputs', 'wall s', 'execs/s', 'crashes', 'hangs', 'sanitizer reports', 'result']];
let failures = 0;
for (const name of targets) {
  console.error(`fuzzing ${name}: ${values.runs} runs`);
  const r = await runTarget(name);
  const s = summarise(r);
  if (s.failed) {
    failures++;
    console.error(`${name} FAILED (exit ${r.code ?? r.signal}); output and inputs in ${r.dir}:`);
    console.error(r.out.split('\n').filter((l) => /ERROR|SUMMARY|runtime error|Test unit written|^\s+#\d+ .* in /.test(l)).slice(0, 40).join('\n'));
  }
  rows.push([name, String(s.units), r.secs.toFixed(1), String(Math.round(s.units / r.secs)), String(s.crashes),
    String(s.hangs), String(s.reports), s.failed ? 'FAIL' : 'ok']);
}
console.log(formatTable(rows));
if (failures || values.keep) console.log(`(outputs and new corpus units in ${work})`);
else rmSync(work, { recursive: true, force: true });
process.exit(failures ? 1 : 0);
