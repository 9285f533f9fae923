#!/usr/bin/env node
// What `vtoe run` adds to a program's start with a standing agent: `true` alone, through
// bin/vtoe (the C launcher) and through the Node CLI (node bin/vtoe.js run), alternated, each
// a fresh process; medians and the launcher's cost over the program's.
//   node bench/launcher.mjs [--runs 50]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { killChildren, line, start } from './children.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '50' } } });
const runs = Number(values.runs);
const dir = mkdtempSync(join(tmpdir(), 'vtoe-launch-'));
const env = { ...process.env, VTOE_AGENT_SOCKET: join(dir, 'agent.sock') };
const truePath = '/bin/true';
const ways = {
  plain: [truePath, []],
  'bin/vtoe run': [join(root, 'bin/vtoe'), ['run', '--', truePath]],
  'node bin/vtoe.js run': [process.execPath, [join(root, 'bin/vtoe.js'), 'run', '--', truePath]],
};

function timedMs([cmd, args]) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: 'ignore' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}`);
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  const agent = start(process.execPath, [join(root, 'bin/vtoe.js'), 'agent'], env);
  await line(agent, 'stderr', /listening on/);
  const times = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
  for (let i = 0; i < runs; i++) for (const [k, way] of Object.entries(ways)) times[k].push(timedMs(way));
  const plain = median(times.plain);
  console.log(`start-up of ${truePath}, ${runs} runs each, alternated, with a standing agent (medians):`);
  for (const [k, xs] of Object.entries(times)) {
    const m = median(xs);
    console.log(`  ${k.padEnd(22)} ${m.toFixed(2).padStart(8)} ms${k === 'plain' ? '' : `   +${(m - plain).toFixed(2)} ms over plain`}`);
  }
} finally {
  killChildren();
  rmSync(dir, { recursive: true, force: true });
}
