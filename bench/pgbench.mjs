#!/usr/bin/env node
// pgbench through offload against kernel TCP.  One PostgreSQL cluster (initdb and `pgbench -i`
// once), then trials that alternate the two ways, each with a fresh postmaster and pgbench in the
// same environment (the shim in LD_PRELOAD with a standing agent, or nothing): select-only (-S),
// then TPC-B, each for --seconds with --clients and --threads.  Medians of the tps over the
// trials, and offloaded / kernel TCP.  Each offloaded trial checks with the agent that pgbench's
// connections were offloaded (none fell back).  With --connect, pgbench opens a connection per
// transaction (-C): the agent's short-connection rule then puts most of them on kernel TCP
// after the first few, and the trial reports how many went which way.
//
// PostgreSQL refuses to run as root, so as root the server, pgbench and the agent run as the
// `postgres` user (Debian's postgresql package makes it); an agent serves its own user only.
//   node bench/pgbench.mjs [--trials 5] [--seconds 10] [--clients 8] [--threads 2] [--scale 1]
//                          [--synchronous-commit on|off] [--connect]
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { killChildren, line, start } from './children.mjs';
import { median, shimPath } from './connect-trial.mjs';

const exec = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'bin/vtoe.js');

const { values } = parseArgs({ options: {
  trials: { type: 'string', default: '5' },
  seconds: { type: 'string', default: '10' },
  clients: { type: 'string', default: '8' },
  threads: { type: 'string', default: '2' },
  scale: { type: 'string', default: '1' },
  'synchronous-commit': { type: 'string', default: 'on' },
  connect: { type: 'boolean', default: false },
} });
const trials = Number(values.trials);
const seconds = Number(values.seconds);

function fail(message) {
  process.stderr.write(`pgbench bench: ${message}\n`);
  process.exit(2);
}

function pgBin() {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  return readdirSync(base).sort((a, b) => Number(b) - Number(a)).map((v) => join(base, v, 'bin'))
    .find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'pgbench')));
}

/** A port below the ephemeral range that is free now (one inside it may be taken meanwhile). */
async function freeLowPort() {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + ((process.pid + i * 7919) % 12000);
    const free = await new Promise((done) => {
      const s = createServer().once('error', () => done(false)).listen(port, '127.0.0.1', () => s.close(() => done(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port in 20000-31999');
}

const bin = pgBin();
if (!bin) fail('needs PostgreSQL with pgbench (Debian: apt-get install -y postgresql)');
const asRoot = process.getuid() === 0;
// As root, every PostgreSQL process (and the agent) runs as postgres, in the environment given.
const as = (cmd, args, env = {}) => asRoot
  ? ['runuser', ['-u', 'postgres', '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), cmd, ...args]]
  : [cmd, args];
const run = (cmd, args, env = {}) => {
  const [c, a] = as(cmd, args, env);
  return exec(c, a, { env: asRoot ? process.env : { ...process.env, ...env }, maxBuffer: 1 << 24 });
};

const dir = mkdtempSync(join(tmpdir(), 'vtoe-pgbench-'));
const data = join(dir, 'data');
let agent;
try {
  if (asRoot) {
    const id = async (flag) => Number((await exec('id', [flag, 'postgres'])).stdout);
    chownSync(dir, await id('-u'), await id('-g'));
  }
  const log = join(dir, 'server.log');
  const port = String(await freeLowPort());
  const socket = join(dir, 'agent.sock');
  const [ac, aa] = as(process.execPath, [cli, 'agent'], { VTOE_AGENT_SOCKET: socket });
  agent = start(ac, aa, { ...process.env, VTOE_AGENT_SOCKET: socket });
  await line(agent, 'stderr', /listening on/);
  const offload = { LD_PRELOAD: shimPath, VTOE_AGENT_SOCKET: socket };
  const stats = async () => JSON.parse((await run(process.execPath, [cli, 'stats', '--json'], { VTOE_AGENT_SOCKET: socket })).stdout);

  const server = async (env, action) => {
    const args = ['-D', data, '-l', log, '-w', action];
    if (action === 'stop') args.push('-m', 'fast');
    else args.push('-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c synchronous_commit=${values['synchronous-commit']}`);
    await run(join(bin, 'pg_ctl'), args, env).catch((err) => {
      throw new Error(`pg_ctl ${action}: ${err.message}\n${existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : ''}`);
    });
  };
  const pgbench = async (env, extra) => {
    const r = await run(join(bin, 'pgbench'), ['-h', '127.0.0.1', '-p', port, '-c', values.clients, '-j', values.threads,
      '-T', String(seconds), ...(values.connect ? ['-C'] : []), ...extra, 'postgres'], env);
    const tps = /^tps = ([\d.]+)/m.exec(r.stdout);
    const failed = /number of failed transactions: (\d+)/.exec(r.stdout);
    if (!tps || (failed && failed[1] !== '0')) throw new Error(`pgbench ${extra.join(' ')}: ${r.stdout}${r.stderr}`);
    return Number(tps[1]);
  };

  await run(join(bin, 'initdb'), ['-D', data, '-A', 'trust']);
  await server({}, 'start');
  await run(join(bin, 'pgbench'), ['-h', '127.0.0.1', '-p', port, '-i', '-s', values.scale, 'postgres']);
  await server({}, 'stop');

  const ways = { 'kernel TCP': {}, offloaded: offload };
  const tps = Object.fromEntries(Object.keys(ways).map((k) => [k, { select: [], tpcb: [] }]));
  for (let t = 0; t < trials; t++) {
    for (const [k, env] of Object.entries(ways)) {
      await server(env, 'start');
      try {
        const before = k === 'offloaded' ? await stats() : undefined;
        tps[k].select.push(await pgbench(env, ['-S']));
        tps[k].tpcb.push(await pgbench(env, []));
        if (before) {
          const after = await stats();
          const off = after.offloaded - before.offloaded;
          const fell = after.fallback.total - before.fallback.total;
          if (values.connect) {
            const short = (after.fallback.reasons['short-lived'] ?? 0) - (before.fallback.reasons['short-lived'] ?? 0);
            process.stderr.write(`trial ${t + 1}: ${off} connections offloaded, ${fell} on kernel TCP (${short} short-lived)\n`);
          } else if (off < 2 * Number(values.clients) || fell !== 0) {
            throw new Error(`trial ${t + 1}: ${off} connections offloaded, ${fell} fell back`);
          }
        }
      } finally {
        await server(env, 'stop');
      }
      process.stderr.write(`trial ${t + 1} ${k}: select-only ${tps[k].select.at(-1)} tps, TPC-B ${tps[k].tpcb.at(-1)} tps\n`);
    }
  }
  const fmt = (xs) => xs.map((x) => x.toFixed(0)).join(', ');
  console.log(`pgbench -c ${values.clients} -j ${values.threads} -T ${seconds}${values.connect ? ' -C' : ''}, scale ${values.scale}, synchronous_commit=${values['synchronous-commit']}, ` +
    `${trials} trials alternated, a fresh postmaster each (medians):`);
  for (const w of ['select', 'tpcb']) {
    const name = w === 'select' ? 'select-only' : 'TPC-B';
    const m = (k) => median(tps[k][w]);
    console.log(`  ${name.padEnd(11)} kernel TCP ${m('kernel TCP').toFixed(0).padStart(6)} tps (${fmt(tps['kernel TCP'][w])})   ` +
      `offloaded ${m('offloaded').toFixed(0).padStart(6)} tps (${fmt(tps.offloaded[w])})   offloaded / kernel TCP ${(m('offloaded') / m('kernel TCP')).toFixed(2)}x`);
  }
} finally {
  // A server left by a failure goes first; the agent then stops as an operator would stop it
  // (runuser passes SIGTERM on; a SIGKILL would leave the agent behind it running).
  if (existsSync(join(data, 'postmaster.pid'))) await run(join(bin, 'pg_ctl'), ['-D', data, '-w', '-m', 'immediate', 'stop']).catch(() => {});
  if (agent && agent.exitCode === null) {
    const exited = new Promise((done) => agent.once('exit', done));
    agent.kill('SIGTERM');
    await exited;
  }
  killChildren();
  rmSync(dir, { recursive: true, force: true });
}
