#!/usr/bin/env node
// Idle costs nothing: a standing agent plus idle offloaded connections (readers asleep in recv,
// poll and epoll_wait, their peers waiting) must use no CPU. Reads utime+stime from /proc over a window.
//   node bench/idle-cpu.mjs [--seconds 10] [--windows 3]
import { execFileSync } from 'node:child_process';
import { killChildren, line, start } from './children.mjs';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { offloadEnv } from '../dist/agent/preload-env.js';
import { adminRequest } from '../dist/agent/admin.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, windows: { type: 'string', default: '3' } } });
const seconds = Number(values.seconds);
const windows = Number(values.windows);
const dir = mkdtempSync(join(tmpdir(), 'vtoe-idle-'));
const socket = join(dir, 'agent.sock');
const peer = join(dir, 'e2e-peer');
execFileSync('cc', ['-O2', '-o', peer, join(root, 'test/c/e2e-peer.c')]);
const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

try {
  const agent = start(process.execPath, [join(root, 'bin/vtoe.js'), 'agent', '--socket', socket], process.env);
  await line(agent, 'stderr', /listening on/);
  const procs = { agent: agent.pid };
  // one idle connection per way of waiting: a blocking recv, poll and epoll_wait (both answered
  // from the rings until they sleep)
  for (const wait of ['recv', 'poll', 'epoll']) {
    const holder = start(peer, ['hold'], offloadEnv(socket));
    const [, port] = await line(holder, 'stdout', /READY (\d+)/);
    const reader = start(peer, ['reader', port, wait], offloadEnv(socket));
    await line(reader, 'stdout', /CONNECTED/);
    await line(holder, 'stdout', /ACCEPTED/);
    procs[`reader (asleep in ${wait})`] = reader.pid;
    procs[`peer of the ${wait} reader`] = holder.pid;
  }
  const rows = await adminRequest(`${socket}.admin`, 'ss');
  const offloaded = rows.filter((r) => r.fabric === 'shm' && r.cm === 'ESTABLISHED').length;
  console.log(`${offloaded} offloaded connection ends ESTABLISHED (vtoe ss); CPU from /proc/PID/stat:`);
  // Consecutive windows: the first can include V8 finishing its work from the set-up (a
  // collection some seconds after the last allocation); the later ones are the steady state.
  for (let w = 1; w <= windows; w++) {
    const [label, secs] = [`window ${w} of ${seconds} s`, seconds];
    const before = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuTicks(pid)]));
    await new Promise((r) => setTimeout(r, secs * 1000)); // the measurement window itself
    console.log(`  ${label}:`);
    for (const [name, pid] of Object.entries(procs)) {
      const ms = ((cpuTicks(pid) - before[name]) * 1000) / ticksPerSecond;
      console.log(`    ${name.padEnd(26)} pid ${String(pid).padEnd(8)} cpu ${ms.toFixed(0)} ms = ${(ms / 10 / secs).toFixed(2)} %`);
    }
  }
} finally {
  killChildren();
  rmSync(dir, { recursive: true, force: true });
}
