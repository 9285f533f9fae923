#!/usr/bin/env node
// What the shim costs when only one side of a connection runs with it.  The client side: a
// program that connects to a server without the shim (a database, a service, a licence
// server), with no preload, through the shim with the agent's default kernel hold, and through
// the shim asking the agent every time (VTOE_KERNEL_HOLD_MS=0).  The server side: a server
// under the shim accepting plain clients.  The same client (vtoe-pingpong --mode connect, 64 B
// each way); each trial a fresh server and client; the ways alternate; medians of the p50s.
//   node bench/connect-kernel-peer.mjs [--trials 5] [--iters 3000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { killChildren } from './children.mjs';
import { connectTrial, median, shimPath as shim, standingAgent } from './connect-trial.mjs';

const { values } = parseArgs({ options: {
  trials: { type: 'string', default: '5' },
  iters: { type: 'string', default: '3000' },
} });
const trials = Number(values.trials);
const iters = Number(values.iters);
const dir = mkdtempSync(join(tmpdir(), 'vtoe-connk-'));

/** One trial: a fresh kernel server and a fresh client; the client's p50 connection time. */
async function trial(envs) {
  return (await connectTrial({ iters, ...envs })).conn_us.p50;
}

try {
  const { socket: held } = await standingAgent(dir, 'held', {});
  const { socket: asking } = await standingAgent(dir, 'asking', { VTOE_KERNEL_HOLD_MS: '0' });
  const ways = {
    'plain (no preload)': { client: {} },
    'client shim, kernel hold': { client: { LD_PRELOAD: shim, VTOE_AGENT_SOCKET: held } },
    'client shim, HOLD_MS=0': { client: { LD_PRELOAD: shim, VTOE_AGENT_SOCKET: asking } },
    'server shim, plain client': { client: {}, server: { LD_PRELOAD: shim, VTOE_AGENT_SOCKET: held } },
  };
  const p50s = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
  for (let t = 0; t < trials; t++) for (const [k, env] of Object.entries(ways)) p50s[k].push(await trial(env));
  const plain = median(p50s['plain (no preload)']);
  console.log(`connect + 64 B each way + close, one side without the shim, ${iters} connections per trial, ${trials} trials alternated:`);
  for (const [k, xs] of Object.entries(p50s)) {
    const m = median(xs);
    console.log(`  ${k.padEnd(26)} p50 ${m.toFixed(1).padStart(7)} us   ${(m / plain).toFixed(2)}x plain   (trials: ${xs.map((x) => x.toFixed(1)).join(', ')})`);
  }
} finally {
  killChildren();
  rmSync(dir, { recursive: true, force: true });
}
