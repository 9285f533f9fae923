#!/usr/bin/env node
// What setting up an offloaded connection costs, against kernel TCP: connect, 64 B each way,
// close, one after another (vtoe-pingpong --mode connect), with both ends under the shim and a
// standing agent that offloads every connection (VTOE_SHORT_BYTES=0: the short-connection
// rule would put them on kernel TCP after 8), and with no preload.  Each trial a fresh server
// and client; the two ways alternate; medians over the trials of each trial's p50, of the
// client's own CPU time, page faults and context switches per connection, and of the agent's
// CPU time per connection (all its threads, from /proc, over the trial), and of its event-loop
// thread's alone: every connection on the host passes through that one thread, so its time per
// connection bounds how many connections per second the agent can set up however many cores.
//   node bench/connect-setup.mjs [--trials 6] [--iters 2000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { killChildren } from './children.mjs';
import { connectTrial, cpuUs, median, shimPath, standingAgent } from './connect-trial.mjs';

const { values } = parseArgs({ options: {
  trials: { type: 'string', default: '6' },
  iters: { type: 'string', default: '2000' },
} });
const trials = Number(values.trials);
const iters = Number(values.iters);
const warmup = 200;
const dir = mkdtempSync(join(tmpdir(), 'vtoe-setup-'));

try {
  const { socket, pid: agentPid } = await standingAgent(dir, 'all', { VTOE_SHORT_BYTES: '0' });
  const shim = { LD_PRELOAD: shimPath, VTOE_AGENT_SOCKET: socket };
  const ways = { 'kernel TCP': {}, offloaded: shim };
  const runs = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
  for (let t = 0; t < trials; t++) {
    for (const [k, env] of Object.entries(ways)) {
      const before = cpuUs(agentPid);
      const loopBefore = cpuUs(agentPid, agentPid);
      const r = await connectTrial({ iters, warmup, client: env, server: env });
      // the warm-up's connections too: the agent serves them as well
      const n = iters + warmup;
      runs[k].push({ ...r, agent_cpu_us: (cpuUs(agentPid) - before) / n, agent_loop_us: (cpuUs(agentPid, agentPid) - loopBefore) / n });
    }
  }
  const of = (k, f) => median(runs[k].map(f));
  const p50 = (r) => r.conn_us.p50;
  console.log(`connect + 64 B each way + close, ${iters} connections per trial, ${trials} trials alternated (medians):`);
  for (const k of Object.keys(ways)) {
    const per = (f) => of(k, (r) => r.per_conn[f]);
    console.log(`  ${k.padEnd(11)} p50 ${of(k, p50).toFixed(1).padStart(7)} us   client per connection: CPU ${per('cpu_us').toFixed(1)} us, ` +
      `${per('faults') < 0 ? 'page faults not counted (perf events refused)' : `${per('faults').toFixed(2)} page faults`}, ` +
      `${per('switches').toFixed(2)} context switches; agent CPU ${of(k, (r) => r.agent_cpu_us).toFixed(1)} us ` +
      `(its event loop ${of(k, (r) => r.agent_loop_us).toFixed(1)})   ` +
      `(p50s: ${runs[k].map((r) => p50(r).toFixed(0)).join(', ')})`);
  }
  console.log(`  offloaded / kernel TCP: ${(of('offloaded', p50) / of('kernel TCP', p50)).toFixed(2)}x`);
} finally {
  killChildren();
  rmSync(dir, { recursive: true, force: true });
}
