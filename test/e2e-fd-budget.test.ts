// Descriptor budgets: an offloaded socket must not make a program run out of descriptors where
// kernel TCP would not.  Each limit is set with prlimit before the program starts, as
// `ulimit -n` would be, and every connection carries a byte both ways to count.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { offloadEnv } from '../src/agent/preload-env.js';
import { buildC } from './helpers/cc.js';
import { have, killAll, startProc, type Proc } from './helpers/proc.js';

const NEEDS = have('prlimit') ? '' : ' [needs prlimit (util-linux)]';

let dir: string;
let agent: Agent;
let bin: string;

beforeAll(async () => {
  bin = buildC('fd-budget', ['test/c/fd-budget.c']);
  dir = mkdtempSync(join(tmpdir(), 'vtoe-fd-budget-'));
  agent = await Agent.start({ socketPath: join(dir, 'agent.sock'), config: { timewaitMs: 50, maxConnections: 8192 } });
});
afterEach(() => killAll());
afterAll(async () => {
  await agent?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function limited(nofile: number, args: string[], env: NodeJS.ProcessEnv): Proc {
  return startProc('prlimit', [`--nofile=${nofile}:${nofile}`, '--', bin, ...args], env);
}

/** "what K err E fds F" from a fd-budget run. */
async function outcome(p: Proc, what: string): Promise<{ count: number; err: string; fds: number }> {
  const m = await p.waitLine(new RegExp(`^${what} (\\d+) err (\\S+) fds (-?\\d+)$`), 120_000);
  return { count: Number(m[1]), err: m[2]!, fds: Number(m[3]) };
}

const kernelEnv = (): NodeJS.ProcessEnv => ({ ...process.env, LD_PRELOAD: '' });

describe('descriptor budgets', () => {
  it.skipIf(NEEDS)(`2000 offloaded connections fit in ulimit -n 4096, on each side${NEEDS}`, async () => {
    const env = offloadEnv(agent.socketPath);
    const before = agent.stats();
    const server = limited(4096, ['serve', '2000'], env);
    const port = (await server.waitLine(/^port (\d+)$/))[1]!;
    const client = await outcome(limited(4096, ['client', port, '2000'], env), 'connected');
    const served = await outcome(server, 'accepted');
    // Before: four descriptors per socket, and the client's socket() failed at 1020 or so.
    expect(client).toMatchObject({ count: 2000, err: 'none' });
    expect(served).toMatchObject({ count: 2000, err: 'none' });
    expect(agent.stats().offloaded - before.offloaded).toBe(2000);
    // Two per socket: its own and its peer's doorbell; kernel TCP: one.
    expect(client.fds).toBeLessThanOrEqual(2 * 2000 + 8);
  }, 180_000);

  it.skipIf(NEEDS)(`a server in ulimit -n 1024 serves 1000 offloaded clients, as on kernel TCP${NEEDS}`, async () => {
    const env = offloadEnv(agent.socketPath);
    const server = limited(1024, ['serve', '1000'], env);
    const port = (await server.waitLine(/^port (\d+)$/))[1]!;
    const client = await outcome(startProc(bin, ['client', port, '1000'], env), 'connected');
    const served = await outcome(server, 'accepted');
    // Before: the server's accept() failed with EMFILE after about 250 (four fds each).
    expect(client).toMatchObject({ count: 1000, err: 'none' });
    expect(served).toMatchObject({ count: 1000, err: 'none' });
  }, 180_000);

  it.skipIf(NEEDS)(`a process holding both ends in ulimit -n 1024 holds as many as on kernel TCP${NEEDS}`, async () => {
    const kernel = await outcome(limited(1024, ['both', '600'], kernelEnv()), 'pairs');
    const before = agent.stats();
    const offl = await outcome(limited(1024, ['both', '600'], offloadEnv(agent.socketPath)), 'pairs');
    const after = agent.stats();
    expect(kernel.err).toBe('EMFILE'); // 600 pairs do not fit: the kernel's own bound
    expect(offl.err).toBe('EMFILE');
    // The agent's control channel is the process's one extra descriptor.
    expect(offl.count).toBeGreaterThanOrEqual(kernel.count - 1);
    // Offloaded until the descriptors ran short, then doorbells given up, then kernel TCP.
    expect(after.offloaded - before.offloaded).toBeGreaterThan(kernel.count / 2);
  }, 180_000);

  it.skipIf(NEEDS)(`a process holding offloaded sockets opens as many files as on kernel TCP${NEEDS}`, async () => {
    const opened = async (env: NodeJS.ProcessEnv) => {
      const p = limited(1024, ['both', '200', 'open'], env);
      expect(await outcome(p, 'pairs')).toMatchObject({ count: 200, err: 'none' });
      const m = await p.waitLine(/^opened (\d+) err (\S+)$/);
      expect(m[2]).toBe('EMFILE');
      return Number(m[1]);
    };
    const kernel = await opened(kernelEnv());
    // Before: 400 doorbells held the difference, and open() failed 400 files earlier.
    expect(await opened(offloadEnv(agent.socketPath))).toBeGreaterThanOrEqual(kernel - 1);
  }, 120_000);

  it('with VTOE_PEER_BELLS=0 an offloaded socket costs one descriptor, as a kernel socket does', async () => {
    const env = { ...offloadEnv(agent.socketPath), VTOE_PEER_BELLS: '0' };
    const before = agent.stats();
    const server = startProc(bin, ['serve', '300'], env);
    const port = (await server.waitLine(/^port (\d+)$/))[1]!;
    const client = await outcome(startProc(bin, ['client', port, '300'], env), 'connected');
    const served = await outcome(server, 'accepted');
    expect(client).toMatchObject({ count: 300, err: 'none' });
    expect(served.count).toBe(300);
    expect(agent.stats().offloaded - before.offloaded).toBe(300);
    // stdin, stdout, stderr, the agent's channel and the directory being counted: no more
    expect(client.fds).toBeLessThanOrEqual(300 + 5);
    // The server also has its listener, and for a moment the kernel ends of the last
    // rendezvous connections, parked until their client's FIN (at most 64, vtoe_park.c).
    expect(served.fds).toBeLessThanOrEqual(300 + 6 + 64);
  }, 120_000);
});
