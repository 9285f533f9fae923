// End to end on one host: real processes preloaded with libvtoe.so, a real agent, the shm fabric.
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { kernelEnv, offloadEnv } from '../src/agent/preload-env.js';
import { runPingPong, startPingPongServer, runPingPongClient } from '../src/bench/pingpong.js';
import { buildC, repoRoot } from './helpers/cc.js';
import { killAll, startProc } from './helpers/proc.js';
import { kernelListens } from './helpers/kernel-listen.js';

let dir: string;
let agent: Agent;
let peer: string;
let soak: string;

beforeAll(async () => {
  execFileSync('make', ['-s', '-C', join(repoRoot, 'preload')], { stdio: 'inherit' });
  execFileSync('make', ['-s', '-C', join(repoRoot, 'tools')], { stdio: 'inherit' });
  peer = buildC('e2e-peer', ['test/c/e2e-peer.c']);
  soak = buildC('soak', ['test/c/soak.c']);
  dir = mkdtempSync(join(tmpdir(), 'vtoe-e2e-'));
  agent = await Agent.start({ socketPath: join(dir, 'agent.sock'), config: { timewaitMs: 20 } });
});

afterEach(() => killAll());

afterAll(async () => {
  await agent?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const offload = () => offloadEnv(agent.socketPath);

// Children run asynchronously: the agent lives in this process and must keep serving them.
async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const { stdout } = await promisify(execFile)(cmd, args, { env, encoding: 'utf8' });
  return stdout;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe('offload through the shm fabric', () => {
  it('moves a ping-pong and a stream through shared rings, not kernel TCP', async () => {
    const before = agent.stats();
    const pp = await runPingPong({ mode: 'pp', size: 64, iters: 2000, warmup: 100, env: offload() });
    expect(pp.iters).toBe(2000);
    const stream = await runPingPong({ mode: 'stream', size: 65536, seconds: 0.3, env: offload() });
    expect(stream.bytes).toBeGreaterThan(0);
    const after = agent.stats();
    expect(after.offloaded - before.offloaded).toBe(2);
    expect(after.fallback.total - before.fallback.total).toBe(0);
    // Every payload byte crossed a ring: 2100 round trips of 64 bytes each way, plus the stream.
    expect(after.bytes.sent - before.bytes.sent).toBeGreaterThanOrEqual(2100 * 64 * 2 + stream.bytes);
    // Event suppression: at most one wake-up per message written, never a storm of them.
    const writes = 2100 * 2 + Math.ceil(stream.bytes / 65536);
    expect(after.doorbells - before.doorbells).toBeLessThanOrEqual(writes);
  });

  it('carries socat with byte-exact data (sha256 on both sides)', async () => {
    const src = join(dir, 'src.bin');
    const dst = join(dir, 'dst.bin');
    writeFileSync(src, randomBytes(8 * 1024 * 1024));
    const port = await freePort();
    const before = agent.stats().offloaded;
    const server = startProc('socat', ['-u', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, `CREATE:${dst}`], offload());
    // socat prints nothing when ready: the shim's LISTEN registration, then the kernel's listen().
    await agent.until((a) => a.sockets().some((r) => r.tcp === 'LISTEN' && r.local.endsWith(`:${port}`)) && kernelListens(port));
    await run('socat', ['-u', `OPEN:${src}`, `TCP:127.0.0.1:${port}`], offload());
    expect((await server.exited).code).toBe(0);
    const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
    expect(sha(dst)).toBe(sha(src));
    expect(agent.stats().offloaded - before).toBe(1);
  });

  it('gives ECONNREFUSED when nothing listens, and counts the fallback reason', async () => {
    const port = await freePort();
    const before = agent.stats().fallback.reasons['peer-not-offloaded'] ?? 0;
    const out = await run(peer, ['connect', String(port)], offload());
    expect(out.trim()).toBe('CONNECT ECONNREFUSED');
    expect(agent.stats().fallback.reasons['peer-not-offloaded']).toBe(before + 1);
  });

  it('wakes a reader blocked in recv promptly when its peer is killed with SIGKILL', async () => {
    const before = agent.stats().offloaded;
    const holder = startProc(peer, ['hold'], offload());
    const [, port] = await holder.waitLine(/^READY (\d+)$/);
    const reader = startProc(peer, ['reader', port!], offload());
    await reader.waitLine(/^CONNECTED$/);
    await holder.waitLine(/^ACCEPTED$/);
    expect(agent.stats().offloaded - before).toBe(1);
    holder.kill('SIGKILL');
    const [, n, what] = await reader.waitLine(/^RESULT (-?\d+) (\w+) (\d+)$/, 10_000);
    // A dead peer closes like the kernel closes its sockets: EOF, or a reset.
    expect(n === '0' ? 'EOF' : what).toMatch(/^(EOF|ECONNRESET)$/);
  });

  it('offloads a client that connects the instant the listener appears', async () => {
    // The kernel listen() must not open the port before the agent knows the listener: a client
    // already knocking would reach it first and fall back (seen on CI as NPtcp not offloaded).
    // With that order, a knock whose agent answer came just before the registration can still
    // reach the new kernel listener, if its process is descheduled between the two (seen once
    // in a few full-suite runs on 2 loaded cores).  So up to 3 trials: the old order falls back
    // in nearly every trial, since its window is the whole registration round trip.
    let offloaded = 0;
    for (let trial = 0; trial < 3 && offloaded === 0; trial++) {
      const before = agent.stats();
      const server = startProc(peer, ['late-listen'], offload());
      const [, port] = await server.waitLine(/^BOUND (\d+)$/);
      const client = startProc(peer, ['eager', port!], offload());
      await client.waitLine(/^REFUSED$/);
      server.child.stdin!.write('listen\n');
      const [, refusals] = await client.waitLine(/^CONNECTED (\d+)$/);
      await server.waitLine(/^ACCEPTED$/);
      const after = agent.stats();
      offloaded = after.offloaded - before.offloaded;
      // A refused attempt that asked the agent before the listener was known was handed to the
      // kernel (a counted fallback); one that came after was refused by the rendezvous.
      expect(after.fallback.total - before.fallback.total).toBeLessThanOrEqual(Number(refusals) + 1 - offloaded);
    }
    expect(offloaded).toBe(1);
  });

  it('serves kernel and offloaded clients on one listener (both-mode listen)', async () => {
    const before = agent.stats();
    const server = await startPingPongServer({ env: offload(), count: 2 });
    const viaKernel = await runPingPongClient({ mode: 'pp', size: 64, iters: 100, warmup: 10, port: server.port, env: kernelEnv() });
    const viaOffload = await runPingPongClient({ mode: 'pp', size: 64, iters: 100, warmup: 10, port: server.port, env: offload() });
    await server.done;
    expect(viaKernel.iters).toBe(100);
    expect(viaOffload.iters).toBe(100);
    const after = agent.stats();
    expect(after.kernelAccepted - before.kernelAccepted).toBe(1);
    expect(after.offloaded - before.offloaded).toBe(1);
  });

  it('falls back to kernel TCP, losing nothing, when no agent answers', async () => {
    const env = offloadEnv(join(dir, 'nobody-here.sock'));
    const pp = await runPingPong({ mode: 'pp', size: 64, iters: 200, warmup: 10, env });
    expect(pp.iters).toBe(200);
    const stream = await runPingPong({ mode: 'stream', size: 65536, seconds: 0.2, env });
    expect(stream.bytes).toBeGreaterThan(0); // the tool itself checks the count the server saw
  });

  it('logs the CM and QP sequence of one connection, REQ to TIMEWAIT', async () => {
    const cidsBefore = new Set(agent.events().map((e) => e.cid));
    await runPingPong({ mode: 'pp', size: 64, iters: 10, warmup: 1, env: offload() });
    await agent.until((a) => a.stats().connections.open === 0 && a.stats().connections.timewait === 0);
    const cid = agent.events().map((e) => e.cid).find((c) => !cidsBefore.has(c))!;
    const seq = (side: 0 | 1, machine: string) =>
      agent.events(cid).filter((e) => e.side === side && e.machine === machine).map((e) => e.to);
    expect(seq(0, 'ib_cm')).toEqual(['REQ_SENT', 'REP_RCVD', 'ESTABLISHED', ...closeSeq(seq(0, 'ib_cm'))]);
    expect(seq(1, 'ib_cm')).toEqual(['REQ_RCVD', 'REP_SENT', 'ESTABLISHED', ...closeSeq(seq(1, 'ib_cm'))]);
    expect(seq(0, 'qp')).toEqual(['INIT', 'RTR', 'RTS', 'ERR', 'RESET']);
    expect(seq(0, 'tcp').slice(0, 2)).toEqual(['SYN_SENT', 'ESTABLISHED']);
    expect(seq(1, 'tcp').slice(0, 2)).toEqual(['SYN_RCVD', 'ESTABLISHED']);
    expect(seq(0, 'tcp').at(-1)).toBe('CLOSED');
    expect(seq(1, 'tcp').at(-1)).toBe('CLOSED');
  });
});

describe('soak', () => {
  // A short run on every CI; `test/c/soak.c 64 60` is the long one (see the issue notes).
  it('64 connections, full duplex, random sizes, 5 s: every byte arrives, in order, offloaded', async () => {
    const before = agent.stats();
    const out = await run(soak, ['64', '5'], offload());
    expect(out).toMatch(/^SOAK OK 64 conns \d+ bytes 5 s$/m);
    const after = agent.stats();
    expect(after.offloaded - before.offloaded).toBe(64);
    expect(after.fallback.total - before.fallback.total).toBe(0);
    const moved = Number(/SOAK OK 64 conns (\d+) bytes/.exec(out)![1]);
    expect(after.bytes.received - before.bytes.received).toBeGreaterThanOrEqual(moved);
  }, 60_000);

  it('writes up to 1 MiB to readers that lag: rings grow and shrink, and every byte arrives', async () => {
    const before = agent.stats();
    const out = await run(soak, ['8', '3', '7', String(1 << 20), '2'], offload());
    expect(out).toMatch(/^SOAK OK 8 conns \d+ bytes 3 s$/m);
    const after = agent.stats();
    expect(after.offloaded - before.offloaded).toBe(8);
    expect(after.fallback.total - before.fallback.total).toBe(0);
    expect(after.ringGrowths - before.ringGrowths).toBeGreaterThan(0);
  }, 60_000);
});

/** After ESTABLISHED, one end sent DREQ and the other DREP, then both left TIMEWAIT. */
function closeSeq(actual: string[]): string[] {
  const tail = actual.slice(3);
  expect([['DREQ_SENT', 'TIMEWAIT', 'IDLE'], ['DREQ_RCVD', 'TIMEWAIT', 'IDLE']]).toContainEqual(tail);
  return tail;
}
