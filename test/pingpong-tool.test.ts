// tools/vtoe-pingpong over kernel TCP, driven through src/bench/pingpong.ts.
import { kernelEnv } from '../src/agent/preload-env.js';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  PingPongError,
  runPingPong,
  runPingPongClient,
  startPingPongServer,
} from '../src/bench/pingpong.js';
import { packageRoot, toolPath } from '../src/paths.js';

const env = kernelEnv(process.env);

beforeAll(() => {
  if (!existsSync(toolPath('vtoe-pingpong'))) {
    execFileSync('make', ['-C', 'tools'], { cwd: packageRoot, stdio: 'inherit' });
  }
});

/** A port nobody listens on: bind to port 0, read the port, close. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

describe('vtoe-pingpong over kernel TCP', () => {
  it('kernelEnv removes the preload', () => {
    const e = kernelEnv({ PATH: '/bin', LD_PRELOAD: '/x/libvtoe.so', VTOE_AGENT_SOCKET: '/tmp/s' });
    expect(e).toEqual({ PATH: '/bin' });
  });

  it('ping-pong: 200 round trips of 64 bytes', async () => {
    const r = await runPingPong({ mode: 'pp', size: 64, iters: 200, warmup: 20, env });
    expect(r.mode).toBe('pp');
    expect(r.size).toBe(64);
    expect(r.iters).toBe(200);
    expect(r.warmup).toBe(20);
    const { min, p50, p90, p99, mean } = r.rtt_us;
    expect(min).toBeGreaterThan(0);
    expect(min).toBeLessThanOrEqual(p50);
    expect(p50).toBeLessThanOrEqual(p90);
    expect(p90).toBeLessThanOrEqual(p99);
    expect(mean).toBeGreaterThanOrEqual(min);
    expect(r.latency_us).toBeCloseTo(p50 / 2, 2);
  });

  it('ping-pong with messages larger than a socket buffer', async () => {
    const r = await runPingPong({ mode: 'pp', size: 4 << 20, iters: 3, warmup: 1, env });
    expect(r.size).toBe(4 << 20);
    expect(r.rtt_us.min).toBeGreaterThan(0);
  });

  it('stream: 64 KiB writes for 0.3 s, byte count confirmed by the server', async () => {
    const r = await runPingPong({ mode: 'stream', size: 65536, seconds: 0.3, env });
    expect(r.mode).toBe('stream');
    expect(r.size).toBe(65536);
    expect(r.bytes).toBeGreaterThan(0);
    expect(r.bytes % 65536).toBe(0);
    expect(r.seconds).toBeGreaterThan(0);
    expect(r.gbit_per_s).toBeGreaterThan(0);
    expect(r.gbit_per_s).toBeCloseTo((r.bytes * 8) / r.seconds / 1e9, 2);
    expect(r.mib_per_s).toBeCloseTo(r.bytes / r.seconds / 1048576, 0);
  });

  it('stream with odd-sized writes', async () => {
    const r = await runPingPong({ mode: 'stream', size: 1000, seconds: 0.1, env });
    expect(r.bytes % 1000).toBe(0);
    expect(r.bytes).toBeGreaterThan(0);
  });

  it('one server serves --count connections one after another', async () => {
    const server = await startPingPongServer({ env, count: 2 });
    try {
      const a = await runPingPongClient({ port: server.port, mode: 'pp', size: 1, iters: 10, warmup: 0, env });
      const b = await runPingPongClient({ port: server.port, mode: 'stream', size: 512, seconds: 0.05, env });
      expect(a.mode).toBe('pp');
      expect(b.mode).toBe('stream');
      await server.done;
    } finally {
      server.kill();
    }
  });

  it('connect to a closed port: exit 2 with ECONNREFUSED on stderr', async () => {
    const port = await closedPort();
    const err = await runPingPongClient({ port, mode: 'pp', size: 64, iters: 1, env }).then(
      () => { throw new Error('the client should have failed'); },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PingPongError);
    const e = err as PingPongError;
    expect(e.role).toBe('client');
    expect(e.exitCode).toBe(2);
    expect(e.stderr).toMatch(/connect: .+ \(ECONNREFUSED\)/);
    expect(e.message).toContain('ECONNREFUSED');
  });

  it('a malformed header makes the server exit non-zero with a reason', async () => {
    const server = await startPingPongServer({ env });
    const sock = createConnection({ host: '127.0.0.1', port: server.port });
    sock.on('error', () => {});
    sock.end(Buffer.from('0000000900000040' + '0000000000000001', 'hex')); // mode 9
    const err = await server.done.then(() => undefined, (e: unknown) => e);
    sock.destroy();
    expect(err).toBeInstanceOf(PingPongError);
    expect((err as PingPongError).exitCode).toBe(1);
    expect((err as PingPongError).stderr).toMatch(/unknown mode 9/);
  });

  it('the client rejects bad arguments before connecting', async () => {
    await expect(runPingPongClient({ port: 1, mode: 'pp', size: 0, env })).rejects.toThrow(RangeError);
  });
});
