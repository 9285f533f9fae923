// Programs the project did not write, unmodified, through offload: iperf3 (one and four
// parallel streams), sockperf (all three of its multiplexers, which exercise select, poll and
// epoll on the app fd), curl against python3's http.server, socat with half-close, and an
// inetd-style server that execs a filter on the accepted connection, nginx, redis and sshd
// (whose privilege-separated child confines itself with a seccomp filter).
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { SOCKPERF_MAX_MPS } from '../src/bench/socket-workloads.js';
import { offloadEnv } from '../src/agent/preload-env.js';
import { asanBlocks, have, killAll, startProc } from './helpers/proc.js';
import { kernelListens } from './helpers/kernel-listen.js';

const exec = promisify(execFile);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let dir: string;
let agent: Agent;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vtoe-programs-'));
  agent = await Agent.start({ socketPath: join(dir, 'agent.sock') });
});
afterEach(() => killAll());
afterAll(async () => {
  await agent?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** The agent has an offload-capable listener on this port (the server is ready). */
/** The agent registered the listener, and the kernel's listen() that follows it has run. */
function listening(port: number): (a: Agent) => boolean {
  return (a) => a.sockets().some((r) => r.tcp === 'LISTEN' && r.local.endsWith(`:${port}`)) && kernelListens(port);
}

describe('iperf3 through offload', () => {
  it('runs client and server with every connection offloaded', async () => {
    const port = await freePort();
    const before = agent.stats();
    const server = startProc('iperf3', ['-s', '-1', '-B', '127.0.0.1', '-p', String(port)], offloadEnv(agent.socketPath));
    // iperf3's stdout is block-buffered into a pipe; its registered listener is the signal.
    await agent.until(listening(port));
    const { stdout } = await exec('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', '1', '-J'], { env: offloadEnv(agent.socketPath) });
    const result = JSON.parse(stdout) as { end: { sum_received: { bytes: number; bits_per_second: number } } };
    expect(result.end.sum_received.bytes).toBeGreaterThan(0);
    expect((await server.exited).code).toBe(0);
    const after = agent.stats();
    // iperf3 opens a control connection and one data stream.
    expect(after.offloaded - before.offloaded).toBe(2);
    expect(after.fallback.total - before.fallback.total).toBe(0);
    expect(after.bytes.sent - before.bytes.sent).toBeGreaterThanOrEqual(result.end.sum_received.bytes);
  });
});

describe('iperf3 -P 4 through offload', () => {
  it('runs four parallel streams, each one offloaded', async () => {
    const port = await freePort();
    const before = agent.stats();
    const server = startProc('iperf3', ['-s', '-1', '-B', '127.0.0.1', '-p', String(port)], offloadEnv(agent.socketPath));
    await agent.until(listening(port));
    const { stdout } = await exec('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', '1', '-P', '4', '-J'],
      { env: offloadEnv(agent.socketPath) });
    const result = JSON.parse(stdout) as { end: { streams: unknown[]; sum_received: { bytes: number } } };
    expect(result.end.streams).toHaveLength(4);
    expect(result.end.sum_received.bytes).toBeGreaterThan(0);
    expect((await server.exited).code).toBe(0);
    const after = agent.stats();
    expect(after.offloaded - before.offloaded).toBe(5); // the control connection and four streams
    expect(after.fallback.total - before.fallback.total).toBe(0);
    // per program: client and server are both iperf3, so each connection counts once for it
    expect(after.programs.iperf3!.offloaded - (before.programs.iperf3?.offloaded ?? 0)).toBe(5);
  });
});

describe('curl against python3 -m http.server through offload', () => {
  const blocked = asanBlocks('curl');
  it.skipIf(blocked !== '')(`downloads a file byte-exact, server and client offloaded${blocked}`, async () => {
    const port = await freePort();
    const body = randomBytes(3 << 20);
    writeFileSync(join(dir, 'blob.bin'), body);
    const before = agent.stats();
    const server = startProc('python3', ['-m', 'http.server', '--bind', '127.0.0.1', '--directory', dir, String(port)],
      offloadEnv(agent.socketPath));
    await agent.until(listening(port));
    const out = join(dir, 'download.bin');
    await exec('curl', ['-sS', '--fail', '-o', out, `http://127.0.0.1:${port}/blob.bin`], { env: offloadEnv(agent.socketPath) });
    expect(sha256(readFileSync(out))).toBe(sha256(body));
    server.kill('SIGTERM');
    await server.exited;
    const after = agent.stats();
    expect(after.offloaded - before.offloaded).toBe(1);
    expect(after.fallback.total - before.fallback.total).toBe(0);
  });
});

describe('socat through offload, half-close in both directions', () => {
  for (const direction of ['client to server', 'server to client'] as const) {
    it(`sends ${direction}, shuts down writing, and the other side still answers`, async () => {
      const port = await freePort();
      const before = agent.stats();
      // The side that sends the request shuts down writing after it; the other side reads to
      // EOF, answers with a checksum, and closes: both halves of the connection are used.
      const answer = 'sh -c "sha256sum | cut -c1-64"';
      const request = randomBytes(1 << 20);
      writeFileSync(join(dir, 'request.bin'), request);
      const feeder = `OPEN:${join(dir, 'request.bin')}!!STDOUT`;
      const serverArgs = direction === 'client to server'
        ? [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, `SYSTEM:${answer}`]
        : ['-t', '30', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, feeder];
      const server = startProc('socat', serverArgs, offloadEnv(agent.socketPath));
      await agent.until(listening(port));
      const clientArgs = direction === 'client to server'
        ? ['-t', '30', feeder, `TCP:127.0.0.1:${port}`]
        : [`TCP:127.0.0.1:${port}`, `SYSTEM:${answer}`];
      const { stdout } = await exec('socat', clientArgs, { env: offloadEnv(agent.socketPath) });
      const srv = await server.exited;
      const replied = direction === 'client to server' ? stdout : server.stdout();
      expect(replied.trim()).toBe(sha256(request));
      expect(srv.code).toBe(0);
      const after = agent.stats();
      expect(after.offloaded - before.offloaded).toBe(1);
      expect(after.fallback.total - before.fallback.total).toBe(0);
    });
  }
});

/** An inetd in Python: accepts one connection, puts it on stdin and stdout, execs program. */
function inetd(port: number, program: string) {
  const script = [
    'import os, socket',
    `l = socket.create_server(("127.0.0.1", ${port}))`,
    'c, _ = l.accept()',
    'l.close()',
    'os.dup2(c.fileno(), 0); os.dup2(c.fileno(), 1); c.close()',
    `os.execvp("${program}", ["${program}"])`,
  ].join('\n');
  return startProc('python3', ['-c', script], offloadEnv(agent.socketPath));
}

/**
 * 1 MiB from socat to an inetd-style server running `program` on the connection, through
 * offload: `reply` is socat's second address for what comes back. Checks that the server exited
 * 0 and that exactly one connection was offloaded, none fell back.
 */
async function throughInetd(program: string, reply: (name: string) => string): Promise<{ request: Buffer; stdout: string }> {
  const port = await freePort();
  const before = agent.stats();
  const server = inetd(port, program);
  await agent.until(listening(port));
  const request = randomBytes(1 << 20);
  const file = join(dir, `${program}-request.bin`);
  writeFileSync(file, request);
  const { stdout } = await exec('socat', ['-t', '30', `OPEN:${file}!!${reply(program)}`, `TCP:127.0.0.1:${port}`],
    { env: offloadEnv(agent.socketPath) });
  expect((await server.exited).code).toBe(0);
  const after = agent.stats();
  expect(after.offloaded - before.offloaded).toBe(1);
  expect(after.fallback.total - before.fallback.total).toBe(0);
  return { request, stdout };
}


describe('exec with an inherited offloaded socket (inetd style)', () => {
  it('python accepts, puts the connection on stdin and stdout, and execs cat', async () => {
    // The accepted socket survives exec as fds 0 and 1 of cat (the shim hands it on); cat uses
    // read(2)/write(2).
    const echoed = join(dir, 'exec-echoed.bin');
    const { request } = await throughInetd('cat', () => `CREATE:${echoed}`);
    expect(sha256(readFileSync(echoed))).toBe(sha256(request));
  });
});

describe('a stdio filter on an inherited offloaded socket', () => {
  it('python accepts and execs sha256sum, which reads stdin with fread and answers with printf', async () => {
    // glibc's stdio reads and writes with internal calls no preload sees: the shim gives the new
    // image stdin and stdout streams that go through the rings.
    const { request, stdout } = await throughInetd('sha256sum', () => 'STDOUT');
    expect(stdout).toBe(`${sha256(request)}  -\n`);
  });
});

describe('servers a new user tries first', () => {
  // nginx's master registers the listener; its worker is a fork that drops privileges to
  // nobody before it accepts, so it must have its agent channel from the fork on.
  const blocked = have('nginx') ? asanBlocks('nginx', 'curl') : ' [needs nginx (Debian: nginx-light)]';
  it.skipIf(blocked !== '')(`nginx: a worker that runs as nobody serves a file to curl${blocked}`, async () => {
    const port = await freePort();
    const root = mkdtempSync(join(tmpdir(), 'vtoe-nginx-'));
    chmodSync(root, 0o755);
    const blob = randomBytes(8 << 20);
    writeFileSync(join(root, 'blob.bin'), blob, { mode: 0o644 });
    writeFileSync(join(root, 'nginx.conf'), [
      `daemon off; worker_processes 2; pid ${root}/nginx.pid; error_log ${root}/error.log;`,
      'events { worker_connections 64; }',
      `http { access_log off; server { listen 127.0.0.1:${port}; root ${root}; } }`,
    ].join('\n'));
    const before = agent.stats();
    const server = startProc('nginx', ['-c', join(root, 'nginx.conf')], offloadEnv(agent.socketPath));
    try {
      await agent.until(listening(port));
      const out = join(dir, 'nginx-got.bin');
      await exec('curl', ['-sS', '--fail', '--max-time', '20', '-o', out, `http://127.0.0.1:${port}/blob.bin`],
        { env: offloadEnv(agent.socketPath) });
      expect(sha256(readFileSync(out))).toBe(sha256(blob));
      const after = agent.stats();
      expect(after.programs.nginx!.offloaded - (before.programs.nginx?.offloaded ?? 0)).toBe(1);
      expect(after.fallback.total - before.fallback.total).toBe(0);
    } finally {
      server.kill('SIGQUIT');
      await server.exited;
      rmSync(root, { recursive: true, force: true });
    }
  });

  // wrk counts a read() that fails with EAGAIN right after epoll_wait reported EPOLLIN as a
  // read error: readiness that is not there.  Kernel TCP gives none.
  const wrkOk = have('nginx') && have('wrk');
  it.skipIf(!wrkOk)(`nginx (2 workers, sendfile) under wrk -t2 -c50: no read errors${wrkOk ? '' : ' [needs nginx-light, wrk]'}`, async () => {
    const port = await freePort();
    const root = mkdtempSync(join(tmpdir(), 'vtoe-nginx-wrk-'));
    chmodSync(root, 0o755);
    writeFileSync(join(root, 'index.html'), randomBytes(2048).toString('hex'), { mode: 0o644 });
    writeFileSync(join(root, 'nginx.conf'), [
      `daemon off; worker_processes 2; pid ${root}/nginx.pid; error_log ${root}/error.log;`,
      'events { worker_connections 256; }',
      `http { access_log off; sendfile on; server { listen 127.0.0.1:${port}; root ${root}; } }`,
    ].join('\n'));
    const before = agent.stats();
    const server = startProc('nginx', ['-c', join(root, 'nginx.conf')], offloadEnv(agent.socketPath));
    try {
      await agent.until(listening(port));
      const { stdout } = await exec('wrk', ['-t2', '-c50', '-d3s', `http://127.0.0.1:${port}/index.html`],
        { env: offloadEnv(agent.socketPath) });
      const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0);
      expect(requests, stdout).toBeGreaterThan(1000);
      expect(stdout).not.toMatch(/Socket errors|Non-2xx/);
      const after = agent.stats();
      expect(after.programs.wrk!.offloaded - (before.programs.wrk?.offloaded ?? 0)).toBeGreaterThanOrEqual(50); // and reconnects after keepalive_requests
      expect(after.fallback.total - before.fallback.total).toBe(0);
    } finally {
      server.kill('SIGQUIT');
      await server.exited;
      rmSync(root, { recursive: true, force: true });
    }
  }, 30_000);

  it.skipIf(!have('redis-server'))(`redis-server with redis-benchmark, 8 clients${have('redis-server') ? '' : ' [needs redis-server, redis-tools]'}`, async () => {
    const port = await freePort();
    const before = agent.stats();
    const server = startProc('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      offloadEnv(agent.socketPath));
    try {
      await agent.until(listening(port));
      const { stdout } = await exec('redis-benchmark', ['-p', String(port), '-c', '8', '-n', '20000', '-t', 'set,get', '-q', '--csv'],
        { env: offloadEnv(agent.socketPath) });
      expect(stdout).toMatch(/"SET","\d+/);
      expect(stdout).toMatch(/"GET","\d+/);
      const after = agent.stats();
      expect(after.programs['redis-server']!.offloaded - (before.programs['redis-server']?.offloaded ?? 0)).toBeGreaterThanOrEqual(8);
      expect(after.fallback.total - before.fallback.total).toBe(0);
    } finally {
      server.kill('SIGTERM');
      await server.exited;
    }
  });

  // sshd hands each connection to a child that installs a seccomp filter allowing read, write
  // and poll, not the shim's own sendto, recvfrom or ppoll: the shim must follow the filter.
  const sshd = ['/usr/sbin/sshd', '/usr/bin/sshd'].find((p) => existsSync(p));
  const sshBlocked = !sshd || !have('ssh') || !have('ssh-keygen') ? ' [needs openssh-server, openssh-client]'
    : process.getuid?.() !== 0 ? ' [needs root: sshd privilege separation]' : asanBlocks(sshd, 'ssh');
  it.skipIf(sshBlocked !== '')(`sshd: a session over an offloaded connection, its preauth child under seccomp${sshBlocked}`, async () => {
    const port = await freePort();
    const root = mkdtempSync(join(tmpdir(), 'vtoe-sshd-'));
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // its privilege-separation directory
    for (const key of ['host', 'client']) await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(root, key)]);
    writeFileSync(join(root, 'sshd_config'), [
      `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${root}/host`, `AuthorizedKeysFile ${root}/client.pub`,
      'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no',
      'PermitRootLogin yes', `PidFile ${root}/sshd.pid`, '',
    ].join('\n'));
    const before = agent.stats();
    const server = startProc(sshd!, ['-D', '-e', '-f', join(root, 'sshd_config')], offloadEnv(agent.socketPath));
    try {
      await agent.until(listening(port));
      const { stdout } = await exec('ssh', ['-F', '/dev/null', '-i', join(root, 'client'), '-p', String(port),
        '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
        `${userInfo().username}@127.0.0.1`, 'echo session-ok; head -c 3000000 /dev/zero | sha256sum'],
      { env: offloadEnv(agent.socketPath), timeout: 20_000 });
      expect(stdout).toContain('session-ok');
      expect(stdout).toContain(sha256(Buffer.alloc(3_000_000)));
      const after = agent.stats();
      expect(after.programs.sshd!.offloaded - (before.programs.sshd?.offloaded ?? 0)).toBe(1);
      expect(after.fallback.total - before.fallback.total).toBe(0);
    } finally {
      server.kill('SIGTERM');
      await server.exited;
      rmSync(root, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('sockperf through offload', () => {
  for (const mux of ['select', 'poll', 'epoll']) {
    it(`runs ping-pong and throughput with --iomux-type ${mux}`, async () => {
      const port = await freePort();
      const before = agent.stats();
      // sockperf takes a multiplexer (-F) only with a feed file of addresses (-f).
      const feed = join(dir, `feed-${mux}.txt`);
      writeFileSync(feed, `T:127.0.0.1:${port}\n`);
      const server = startProc('sockperf', ['sr', '-f', feed, '-F', mux], offloadEnv(agent.socketPath));
      await agent.until(listening(port)).catch((err: Error) => {
        throw new Error(`${err.message}; sockperf said: ${server.stdout()} ${server.stderr()}`);
      });
      const common = ['-f', feed, '-F', mux, '-t', '1', '-m', '64'];
      const pp = await exec('sockperf', ['pp', ...common, '--mps', String(SOCKPERF_MAX_MPS)], { env: offloadEnv(agent.socketPath) });
      expect(pp.stdout).toMatch(/avg-latency=\d/);
      const tp = await exec('sockperf', ['tp', ...common], { env: offloadEnv(agent.socketPath) });
      expect(tp.stdout).toMatch(/BandWidth is \d/);
      server.kill('SIGTERM');
      await server.exited;
      const after = agent.stats();
      expect(after.offloaded - before.offloaded).toBe(2);
      expect(after.fallback.total - before.fallback.total).toBe(0);
    });
  }
});
