// PostgreSQL through offload: its postmaster forks a backend per connection and closes its own
// copy, the forking-server shape. pgbench's connections must be offloaded, and once pgbench is
// done the agent must hold no connection.
//
// PostgreSQL refuses to run as root, so the server, pgbench and the agent all run as the
// `postgres` user that Debian's postgresql package creates.
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { offloadEnv } from '../src/agent/preload-env.js';
import type { StatsSnapshot } from '../src/agent/stats.js';
import { asanBlocks, have, startProc, waitStderr } from './helpers/proc.js';

const exec = promisify(execFile);
const repo = resolve(__dirname, '..');
const cli = join(repo, 'bin', 'vtoe.js');

function pgBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(root, v, 'bin')).find((d) => existsSync(join(d, 'initdb')));
}

async function userExists(name: string): Promise<boolean> {
  try {
    await exec('id', ['-u', name]);
    return true;
  } catch {
    return false;
  }
}

/**
 * A port below the kernel's ephemeral range (32768-60999) that is free now: one inside it may be
 * taken meanwhile by any test's outgoing connection, and the postmaster would fail to start.
 */
async function freeLowPort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + ((process.pid + i * 7919) % 12000);
    const free = await new Promise<boolean>((done) => {
      const s = createServer().once('error', () => done(false)).listen(port, '127.0.0.1', () => s.close(() => done(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port in 20000-31999');
}

const bin = pgBin();
const why = !bin || !have('pgbench') ? ' [needs postgresql (Debian: postgresql)]'
  : !have('runuser') || process.getuid?.() !== 0 ? ' [needs root and runuser, to run PostgreSQL as postgres]'
  : asanBlocks(join(bin, 'initdb'), join(bin, 'postgres'), 'pgbench');
const ready = why === '';

let dir: string | undefined;
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('PostgreSQL and pgbench through offload', () => {
  it.skipIf(!ready)(`pgbench's connections are offloaded, and none is left in the agent afterwards${why}`, async () => {
    if (!(await userExists('postgres'))) throw new Error('no postgres user: install Debian\'s postgresql package');
    dir = mkdtempSync(join(tmpdir(), 'vtoe-pg-'));
    chownSync(dir, Number((await exec('id', ['-u', 'postgres'])).stdout), Number((await exec('id', ['-g', 'postgres'])).stdout));
    const socket = join(dir, 'agent.sock');
    const data = join(dir, 'data');
    const port = String(await freeLowPort());
    const asPostgres = (cmd: string, args: string[], env: Record<string, string> = {}) =>
      exec('runuser', ['-u', 'postgres', '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), cmd, ...args],
        { maxBuffer: 16 << 20 });
    // The shim's variables alone (runuser's env passes them on): those offloadEnv adds to nothing.
    const offload = offloadEnv(socket, {}) as Record<string, string>;
    const stats = async () => JSON.parse((await asPostgres(process.execPath, [cli, 'stats', '--json'], { VTOE_AGENT_SOCKET: socket })).stdout) as StatsSnapshot;

    const agent = startProc('runuser', ['-u', 'postgres', '--', 'env', `VTOE_AGENT_SOCKET=${socket}`, 'VTOE_TIMEWAIT_MS=200',
      process.execPath, cli, 'agent'], process.env);
    await waitStderr(agent, 'listening on'); // the agent's ready line
    try {
      await asPostgres(join(bin!, 'initdb'), ['-D', data, '-A', 'trust']);
      const log = join(dir, 'server.log');
      await asPostgres(join(bin!, 'pg_ctl'), ['-D', data, '-l', log, '-w', 'start',
        '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`], offload).catch((err: Error) => {
        throw new Error(`${err.message}\nserver.log:\n${existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : '(none)'}`);
      });
      try {
        await asPostgres('pgbench', ['-h', '127.0.0.1', '-p', port, '-i', '-s', '1', 'postgres'], offload);
        const before = await stats();
        const run = await asPostgres('pgbench', ['-h', '127.0.0.1', '-p', port, '-S', '-c', '4', '-j', '2', '-T', '3', 'postgres'], offload);
        expect(run.stdout).toMatch(/number of failed transactions: 0/);
        expect(run.stdout).toMatch(/^tps = \d+/m);
        const after = await stats();
        expect(after.offloaded - before.offloaded).toBeGreaterThanOrEqual(4);
        expect(after.fallback.total - before.fallback.total).toBe(0);
        // Each backend closed the socket its postmaster owned; the agent must end them all
        // (before: they stayed in CLOSE_WAIT, with their rings, until the postmaster exited).
        let left = after.connections.open + after.connections.timewait + after.connections.pendingAccept;
        for (let i = 0; i < 100 && left > 0; i++) {
          const s = await stats();
          left = s.connections.open + s.connections.timewait + s.connections.pendingAccept;
        }
        expect(left).toBe(0);
      } finally {
        await asPostgres(join(bin!, 'pg_ctl'), ['-D', data, '-w', '-m', 'fast', 'stop']);
      }
    } finally {
      agent.kill('SIGTERM');
      await agent.exited;
    }
  });
});
