// The native addon on its own: ShmConnection resources, and ControlServer against a real C
// client (test/c/ctl-client.c) that speaks the control protocol, well and badly.
// Every wait is on a real signal: a line from the client, a handler call, a process exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, readdirSync, readlinkSync, readSync, rmSync, statSync, writeFileSync, writeSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection, createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ABI, VTOE_ABI_VERSION, VTOE_CACHELINE, VTOE_REGION_MAGIC, abiConstantTable, eventName, fabricName, opName, reasonName, reasonValue, ringSizeValid } from '../src/abi.js';
import { VtoeSystemError } from '../src/errors.js';
import {
  ControlServer,
  ShmConnection,
  ShmRegionPool,
  abiConstants,
  tcpBindAnyPort,
  tcpBufferSizes,
  tcpEndpoints,
  tcpSocketIdentity,
  type ControlHandlers,
  type CtlRequest,
  type PeerCredentials,
} from '../src/native.js';
import { buildC } from './helpers/cc.js';

let clientBin: string;
beforeAll(() => {
  clientBin = buildC('ctl-client', ['test/c/ctl-client.c']);
});

// ---------------------------------------------------------------------------------------------
// Test plumbing

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      cleanup();
    } catch {
      // best effort: the test's own assertions already ran
    }
  }
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vtoe-native-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Something that becomes true later: resolved by whoever changes the state it looks at. */
class Signals {
  private waiters: Array<() => boolean> = [];

  until<T>(probe: () => T | undefined, what: string, failed?: () => string | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = (): boolean => {
        const value = probe();
        if (value !== undefined) {
          resolve(value);
          return true;
        }
        const failure = failed?.();
        if (failure !== undefined) {
          reject(new Error(`gave up waiting for ${what}: ${failure}`));
          return true;
        }
        return false;
      };
      if (!check()) this.waiters.push(check);
    });
  }

  poke(): void {
    this.waiters = this.waiters.filter((check) => !check());
  }
}

/** A ctl-client process; its stdout lines are collected and can be awaited. */
class CClient {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  exitCode: number | null | undefined;
  readonly exited: Promise<number | null>;
  private readonly signals = new Signals();

  constructor(socket: string, scenario: string) {
    this.child = spawn(clientBin, [socket, scenario], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      this.signals.poke();
    });
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code) => {
        this.exitCode = code;
        this.signals.poke();
        resolve(code);
      });
    });
    cleanups.push(() => this.child.kill('SIGKILL'));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first line (seen so far or later) that matches; fails if the client exits first. */
  line(match: RegExp | string): Promise<string> {
    const test = (l: string) => (typeof match === 'string' ? l === match : match.test(l));
    return this.signals.until(
      () => this.lines.find(test),
      `a line matching ${String(match)}`,
      () => (this.exitCode !== undefined ? `client exited (${this.exitCode}); it printed ${JSON.stringify(this.lines)}` : undefined),
    );
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  endInput(): void {
    this.child.stdin!.end();
  }
}

/** ControlHandlers that record everything and answer each request with respond(). */
class Recorder implements ControlHandlers {
  server!: ControlServer;
  readonly opened = new Map<number, PeerCredentials>();
  readonly messages: Array<{ client: number; req: CtlRequest }> = [];
  readonly closed = new Map<number, string>();
  readonly replyResults: boolean[] = [];
  readonly signals = new Signals();
  respond: (client: number, req: CtlRequest) => void = (client, req) => {
    this.replyResults.push(this.server.reply(client, { event: ABI.ev.ACK, seq: req.seq }));
  };

  onOpen(client: number, cred: PeerCredentials): void {
    this.opened.set(client, cred);
    this.signals.poke();
  }

  onMessage(client: number, req: CtlRequest): void {
    this.messages.push({ client, req });
    try {
      this.respond(client, req);
    } finally {
      this.signals.poke();
    }
  }

  onClose(client: number, reason: string): void {
    this.closed.set(client, reason);
    this.signals.poke();
  }

  clientOf(pid: number): Promise<number> {
    return this.signals.until(
      () => [...this.opened].find(([, cred]) => cred.pid === pid)?.[0],
      `the client of pid ${pid}`,
    );
  }

  closeReason(client: number): Promise<string> {
    return this.signals.until(() => this.closed.get(client), `onClose of client ${client}`);
  }
}

function startServer(path: string, recorder = new Recorder()): { server: ControlServer; recorder: Recorder } {
  const server = new ControlServer(path, recorder);
  recorder.server = server;
  cleanups.push(() => server.close());
  return { server, recorder };
}

function thrown(body: () => unknown): unknown {
  try {
    body();
  } catch (error) {
    return error;
  }
  throw new Error('expected an exception');
}

function memfdCount(): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('/memfd:vtoe-conn')) count++;
    } catch {
      // the fd readdir itself used, now closed
    }
  }
  return count;
}

// ---------------------------------------------------------------------------------------------

describe('ABI mirror', () => {
  it('src/abi.ts holds exactly the constants compiled into the addon from vtoe_abi.h', () => {
    expect(abiConstantTable()).toEqual(abiConstants());
  });

  it('names events, reasons, ops and fabrics in lower-case-hyphen form', () => {
    expect(eventName(ABI.ev.CONNECT_RESPONSE)).toBe('connect-response');
    expect(eventName(ABI.ev.ACK)).toBe('ack');
    expect(eventName(99)).toBe('event-99');
    expect(reasonName(ABI.fb.PEER_NOT_OFFLOADED)).toBe('peer-not-offloaded');
    expect(reasonName(ABI.fb.POLICY)).toBe('policy');
    expect(reasonValue('no-fabric')).toBe(ABI.fb.NO_FABRIC);
    expect(opName(ABI.op.HELLO)).toBe('hello');
    expect(fabricName(ABI.fabric.VERBS)).toBe('verbs');
    expect(ringSizeValid(4096)).toBe(true);
    expect(ringSizeValid(6144)).toBe(false);
  });
});

describe('ShmConnection', () => {
  const open = (ring: number, cid = 1n) => {
    const conn = new ShmConnection(ring, cid);
    cleanups.push(() => conn.close());
    return conn;
  };

  it('rejects ring sizes that are not powers of two in 4 KiB..64 MiB with EINVAL', () => {
    for (const bad of [0, 1, 1000, 2048, 4095, 4097, 3 * 4096, 128 * 1024 * 1024, 2 ** 32, -4096, 4096.5, Number.NaN]) {
      const error = thrown(() => new ShmConnection(bad, 1n));
      expect(error, `ring size ${bad}`).toBeInstanceOf(VtoeSystemError);
      expect((error as VtoeSystemError).code).toBe('EINVAL');
      expect((error as VtoeSystemError).message).toMatch(/power of two from 4096 .* to 67108864/);
    }
    expect(() => new ShmConnection('4096' as unknown as number, 1n)).toThrow(TypeError);
    expect(() => new ShmConnection(4096, 1 as unknown as bigint)).toThrow(TypeError);
  });

  it('accepts both bounds', () => {
    expect(open(4096).mappedBytes).toBe(4096 + 2 * 4096);
    expect(open(64 * 1024 * 1024).mappedBytes).toBe(4096 + 2 * 64 * 1024 * 1024);
  });

  it('maps a large and a bulk area per ring, which, as the small ones, use no memory until a ring writes there', () => {
    const conn = new ShmConnection(8192, 3n, 1 << 20);
    // the bulk area: four small areas' worth, at most the large area
    expect(conn.mappedBytes).toBe(4096 + 2 * 8192 + 2 * (1 << 20) + 2 * 4 * 8192);
    expect(new ShmConnection(8192, 4n, 16384).mappedBytes).toBe(4096 + 2 * 8192 + 2 * 16384 + 2 * 16384);
    expect(fstatSync(conn.fdsFor(0)[ABI.fd.REGION]!).size).toBe(conn.mappedBytes);
    expect(conn.residentBytes).toBe(4096); // the header alone: no ring has written yet
    // a page written in ring 1's small area and one in ring 0's large area: counted, as what the
    // region's file holds, though the agent maps only the header
    const region = conn.fdsFor(0)[ABI.fd.REGION]!;
    writeSync(region, Buffer.from('x'), 0, 1, 4096 + 8192 + 100);
    writeSync(region, Buffer.from('y'), 0, 1, 4096 + 2 * 8192 + 5000);
    expect(conn.residentBytes).toBe(3 * 4096);
    conn.close();
    expect(conn.residentBytes).toBe(0); // unmapped
    for (const bad of [4096, 8192, 3 * 8192, 128 * 1024 * 1024]) {
      const error = thrown(() => new ShmConnection(8192, 1n, bad));
      expect(error, `large area ${bad}`).toBeInstanceOf(VtoeSystemError);
      expect((error as VtoeSystemError).code).toBe('EINVAL');
      expect((error as VtoeSystemError).message).toMatch(/largest ring size .* is invalid/);
    }
  });

  it('writes how far each ring fills into the region: the agent\'s default and the buffers each side set', () => {
    const conn = new ShmConnection(8192, 5n, 1 << 20, undefined,
      { auto: 65536, set: [{ sndbuf: 1000, rcvbuf: 2000 }, { sndbuf: 3000, rcvbuf: 4000 }] });
    const header = Buffer.alloc(4096);
    const fd = openSync(`/proc/self/fd/${conn.regionFd()}`, 'r');
    try {
      readSync(fd, header, 0, header.length, 0);
    } finally {
      closeSync(fd);
    }
    // vtoe_conn_region: ring_large at offset 32, ring_auto after it; ring[s] (4 cache lines
    // each) from the second line, its sndbuf and rcvbuf 16 bytes into its own second line.
    const line = VTOE_CACHELINE;
    expect(header.readUInt32LE(32)).toBe(1 << 20);
    expect(header.readUInt32LE(36)).toBe(65536);
    const ring = (side: number) => line + side * 4 * line + line + 16;
    // ring 0 is what side 0 writes: its SO_SNDBUF, side 1's SO_RCVBUF; ring 1 the other way
    expect([header.readUInt32LE(ring(0)), header.readUInt32LE(ring(0) + 4)]).toEqual([1000, 4000]);
    expect([header.readUInt32LE(ring(1)), header.readUInt32LE(ring(1) + 4)]).toEqual([3000, 2000]);
    conn.close();
    const error = thrown(() => new ShmConnection(8192, 6n, 16384, undefined, { auto: 32768 }));
    expect((error as VtoeSystemError).code).toBe('EINVAL');
    expect((error as VtoeSystemError).message).toMatch(/above the large area/);
  });

  it('hands each side a memfd of the region size, its app socket and the peer bell', () => {
    const ring = 16384;
    const conn = open(ring, 77n);
    const side0 = conn.fdsFor(0);
    const side1 = conn.fdsFor(1);
    for (const fds of [side0, side1]) {
      expect(fds).toHaveLength(3);
      expect(new Set(fds).size).toBe(3);
      const region = fstatSync(fds[ABI.fd.REGION]!);
      expect(region.isFile()).toBe(true);
      expect(region.size).toBe(4096 + 2 * ring);
      expect(fstatSync(fds[ABI.fd.APP]!).isSocket()).toBe(true);
      expect(fstatSync(fds[ABI.fd.PEER_BELL]!).isSocket()).toBe(true);
    }
    // One region, four distinct socket ends.
    expect(side0[ABI.fd.REGION]).toBe(side1[ABI.fd.REGION]);
    expect(new Set([...side0, ...side1]).size).toBe(5);
    expect(conn.mappedBytes).toBe(4096 + 2 * ring);
  });

  it('starts with zero counters and records CM states', () => {
    const conn = open(4096);
    const zero = { head: 0, tail: 0, wakes: 0, grows: 0, fin: false, reset: false, rdShut: false, txWaiting: false };
    expect(conn.counters()).toEqual({ rings: [zero, zero], cmState: [0, 0] });
    conn.setCmState(0, 5);
    conn.setCmState(1, 9);
    expect(conn.counters().cmState).toEqual([5, 9]);
    expect(() => conn.setCmState(2 as 0, 1)).toThrow(RangeError);
  });

  it('releases each side once, keeps the memfd for ATTACH until closed, and keeps counters readable', () => {
    const before = memfdCount();
    const conn = open(4096);
    expect(memfdCount()).toBe(before + 1);
    conn.releaseSide(0);
    conn.releaseSide(0);
    expect((thrown(() => conn.fdsFor(0)) as VtoeSystemError).code).toBe('EBADF');
    expect(conn.fdsFor(1)).toHaveLength(3);
    conn.releaseSide(1);
    expect(memfdCount()).toBe(before + 1);
    expect(fstatSync(conn.regionFd()).size).toBe(conn.mappedBytes);
    expect(conn.counters().rings[0].head).toBe(0);
    conn.close();
    expect(memfdCount()).toBe(before);
    expect((thrown(() => conn.regionFd()) as VtoeSystemError).code).toBe('EBADF');
  });

  it('keeps its copies of the bells for ATTACH_BELL while it watches the ends, and only then', () => {
    const watched = open(4096);
    const bellOfSide0 = watched.fdsFor(1)[2];
    watched.watchEnds(() => {});
    watched.releaseSide(0);
    watched.releaseSide(1);
    expect(watched.peerBellFd(1)).toBe(bellOfSide0);
    expect(fstatSync(watched.peerBellFd(0)).isSocket()).toBe(true);
    const unwatched = open(4096);
    unwatched.releaseSide(0);
    expect((thrown(() => unwatched.peerBellFd(0)) as VtoeSystemError).code).toBe('EBADF');
    expect(fstatSync(unwatched.peerBellFd(1)).isSocket()).toBe(true); // side 1 not released yet
  });

  it('names the side of a socket by its identity, and no other', () => {
    const conn = open(4096);
    const [region, app0, bell1] = conn.fdsFor(0);
    const app1 = conn.fdsFor(1)[1];
    try {
      expect(conn.sideOfSocket(app0)).toBe(0);
      expect(conn.sideOfSocket(app1)).toBe(1);
      expect(conn.sideOfSocket(bell1)).toBe(-1); // the other end of side 0's socket
      expect(conn.sideOfSocket(region)).toBe(-1);
      const other = open(4096);
      expect(other.sideOfSocket(app0)).toBe(-1);
      other.close();
    } finally {
      conn.close();
    }
  });

  it('says once per side when its socket is gone from every holder, all connections through one epoll instance', async () => {
    const epolls = () => readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventpoll]';
      } catch {
        return false; // the directory's own fd, closed by now
      }
    }).length;
    const before = epolls();
    const ends: string[] = [];
    const conns = Array.from({ length: 8 }, (_, i) => {
      const conn = open(4096, BigInt(100 + i));
      conn.watchEnds((side, how) => ends.push(`${i}:${side}:${how}`));
      return conn;
    });
    expect(epolls() - before).toBeLessThanOrEqual(1); // not one per watch
    // The agent's copies of the app sockets are the only ones: releasing them ends those sides.
    conns[0].releaseSide(0);
    conns[3].releaseSide(1);
    conns[3].releaseSide(0);
    await vi.waitFor(() => expect(ends.sort()).toEqual(['0:0:fin', '3:0:fin', '3:1:fin']));
    // A connection closed before its sides ended never calls back.
    conns[5].close();
    conns[6].releaseSide(1);
    await vi.waitFor(() => expect(ends).toContain('6:1:fin'));
    expect(ends.filter((e) => e.startsWith('5:'))).toEqual([]);
    expect(ends).toHaveLength(4);
  });

  it('closes idempotently and refuses use afterwards', () => {
    const before = memfdCount();
    const conn = new ShmConnection(8192, 3n);
    conn.close();
    conn.close();
    expect(conn.closed).toBe(true);
    expect(memfdCount()).toBe(before);
    expect((thrown(() => conn.counters()) as VtoeSystemError).code).toBe('EBADF');
    expect((thrown(() => conn.fdsFor(1)) as VtoeSystemError).code).toBe('EBADF');
  });
});

/** A listening TCP server on 127.0.0.1 and a client connected to it, both closed after the test. */
async function loopbackPair() {
  const server = createServer();
  cleanups.push(() => server.close());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const client = createConnection(port, '127.0.0.1');
  cleanups.push(() => client.destroy());
  await new Promise<void>((resolve) => client.once('connect', resolve));
  return { server, client, port };
}

/** The descriptor under a Node socket, server or datagram socket (its libuv handle's). */
const fdOf = (h: unknown): number => (h as { _handle: { fd: number } })._handle.fd;

describe('tcpEndpoints', () => {
  it("reads a connected socket's two addresses, and refuses what is not a socket", async () => {
    const { client, port } = await loopbackPair();
    const fd = fdOf(client);
    expect(tcpEndpoints(fd)).toEqual({
      local: { family: 4, address: '127.0.0.1', port: client.localPort, scopeId: 0 },
      remote: { family: 4, address: '127.0.0.1', port, scopeId: 0 },
    });
    // tcpBindAnyPort reads the same addresses first: a connected socket is not bound again
    expect((thrown(() => tcpBindAnyPort(fd)) as VtoeSystemError).code).toBe('EISCONN');
    const file = openSync('/proc/self/stat', 'r');
    try {
      expect((thrown(() => tcpEndpoints(file)) as VtoeSystemError).code).toBe('ENOTSOCK');
    } finally {
      closeSync(file);
    }
  });
});

describe('tcpSocketIdentity and tcpBufferSizes', () => {
  it('say what a TCP socket is and what buffers the kernel keeps for it, and refuse any other socket', async () => {
    const { server, client, port } = await loopbackPair();
    const listener = tcpSocketIdentity(fdOf(server));
    expect(listener).toMatchObject({ listening: true, remote: null, local: { port } });
    expect(tcpSocketIdentity(fdOf(client))).toMatchObject({
      listening: false, local: { port: client.localPort }, remote: { port },
    });
    const sizes = tcpBufferSizes(fdOf(client));
    expect(sizes.sndbuf).toBeGreaterThan(0);
    expect(sizes.rcvbuf).toBeGreaterThan(0);
    // A Unix socket and a UDP socket are sockets, but not TCP ones.
    const unixServer = createServer();
    const unixDir = mkdtempSync(join(tmpdir(), 'vtoe-identity-'));
    cleanups.push(() => rmSync(unixDir, { recursive: true, force: true }));
    cleanups.push(() => unixServer.close());
    await new Promise<void>((resolve) => unixServer.listen(join(unixDir, 's'), resolve));
    expect((thrown(() => tcpSocketIdentity(fdOf(unixServer))) as VtoeSystemError).code).toBe('EPROTOTYPE');
    const udp = createSocket('udp4');
    cleanups.push(() => udp.close());
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    expect((thrown(() => tcpSocketIdentity(fdOf(udp))) as VtoeSystemError).code).toBe('EPROTOTYPE');
    const file = openSync('/proc/self/stat', 'r');
    try {
      expect((thrown(() => tcpSocketIdentity(file)) as VtoeSystemError).code).toBe('ENOTSOCK');
      expect((thrown(() => tcpBufferSizes(file)) as VtoeSystemError).code).toBe('ENOTSOCK');
    } finally {
      closeSync(file);
    }
  });
});

describe('ShmRegionPool', () => {
  /** The magic and the cid a region's header holds (struct vtoe_conn_region). */
  const header = (conn: ShmConnection): { magic: number; cid: bigint } => {
    const bytes = Buffer.alloc(24);
    readSync(conn.regionFd(), bytes, 0, 24, 0);
    return { magic: bytes.readUInt32LE(0), cid: bytes.readBigUInt64LE(16) };
  };

  it('makes regions ahead on its own thread, hands one out with its cid, makes the next, and closes the spares', async () => {
    const pool = new ShmRegionPool(8192, 1 << 20, 2);
    cleanups.push(() => pool.close());
    await vi.waitFor(() => expect(pool.ready).toBe(2));
    const conn = new ShmConnection(8192, 0x1234_5678_9abcn, 1 << 20, pool);
    cleanups.push(() => conn.close());
    expect(pool.taken).toBe(1); // one of the two, not one made here
    expect(header(conn)).toEqual({ magic: VTOE_REGION_MAGIC, cid: 0x1234_5678_9abcn });
    expect(conn.mappedBytes).toBe(4096 + 2 * 8192 + 2 * (1 << 20) + 2 * 4 * 8192);
    expect(conn.residentBytes).toBe(4096);
    expect(conn.fdsFor(0)).toHaveLength(3);
    expect(conn.counters().rings[0]).toMatchObject({ head: 0, tail: 0, reset: false });
    await vi.waitFor(() => expect(pool.ready).toBe(2)); // the next one, made ahead again
    // The thread sleeps now (the pool is full).  Counted only within this synchronous stretch:
    // earlier tests' unclosed connections may be finalized during an await.
    const atThree = memfdCount();
    pool.close();
    pool.close();
    expect(pool.ready).toBe(0);
    expect(memfdCount()).toBe(atThree - 2); // the spares closed, the connection's kept
    // Closed: connections are made on the caller's thread, as without a pool.
    const later = new ShmConnection(8192, 7n, 1 << 20, pool);
    expect(pool.taken).toBe(1);
    expect(header(later).cid).toBe(7n);
    later.close();
    expect(pool.failures).toBe(0);
  });

  it('hands out only regions of its own sizes', async () => {
    const pool = new ShmRegionPool(8192, 0, 1);
    cleanups.push(() => pool.close());
    await vi.waitFor(() => expect(pool.ready).toBe(1));
    const other = new ShmConnection(16384, 9n, 0, pool);
    cleanups.push(() => other.close());
    expect(other.mappedBytes).toBe(4096 + 2 * 16384);
    expect(header(other).cid).toBe(9n);
    expect(pool.taken).toBe(0);
    expect(pool.ready).toBe(1);
  });

  it('refuses sizes a connection would refuse, a depth outside 1..64, and anything but a pool', () => {
    expect((thrown(() => new ShmRegionPool(6144, 0, 2)) as VtoeSystemError).code).toBe('EINVAL');
    expect((thrown(() => new ShmRegionPool(8192, 8192, 2)) as VtoeSystemError).code).toBe('EINVAL');
    expect(() => new ShmRegionPool(8192, 0, 0)).toThrow(RangeError);
    expect(() => new ShmRegionPool(8192, 0, 65)).toThrow(RangeError);
    const fake = { handle: {} } as unknown as ShmRegionPool;
    expect(() => new ShmConnection(8192, 1n, 0, fake)).toThrow(/pool must be a ShmRegionPool/);
  });
});

describe('ControlServer', () => {
  const socketIn = (dir: string) => join(dir, 'run', 'vtoe', 'agent.sock');

  it('serves a valid client: HELLO, then CONNECT answered with the shm descriptors', async () => {
    const dir = tempDir();
    const path = socketIn(dir);
    const { server, recorder } = startServer(path);
    expect(statSync(join(dir, 'run', 'vtoe')).mode & 0o777).toBe(0o700);
    expect(statSync(path).isSocket()).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);

    const conns: ShmConnection[] = [];
    recorder.respond = (client, req) => {
      if (req.op !== ABI.op.CONNECT) {
        recorder.replyResults.push(server.reply(client, { event: ABI.ev.ACK, seq: req.seq, spinUs: 50 }));
        return;
      }
      const conn = new ShmConnection(8192, req.cid);
      conns.push(conn);
      cleanups.push(() => conn.close());
      recorder.replyResults.push(server.reply(client, {
        event: ABI.ev.CONNECT_RESPONSE, seq: req.seq, sid: req.sid, cid: req.cid, fabric: ABI.fabric.SHM,
        side: 0, ringSize: 8192,
      }, conn.fdsFor(0)));
      conn.releaseSide(0);
    };

    const client = new CClient(path, 'valid');
    const id = await recorder.clientOf(client.pid);
    expect(recorder.opened.get(id)).toEqual({ pid: client.pid, uid: process.getuid!(), gid: process.getgid!() });
    await client.line('reply event=0 seq=1 err=0 nfds=0 magic=ok');
    await client.line(`reply event=${ABI.ev.CONNECT_RESPONSE} seq=2 err=0 nfds=3 magic=ok`);
    await client.line('fd 0 regular');
    await client.line(`region size=20480 magic=0x56524730 abi=${VTOE_ABI_VERSION} ring=8192 data=4096 cid=0x1122334455667788 armed=1,1`);
    await client.line('shrink=EPERM');
    await client.line('fd 1 socket');
    await client.line('fd 2 socket');
    expect(await client.exited).toBe(0);
    expect(await recorder.closeReason(id)).toBe('closed');

    expect(recorder.replyResults).toEqual([true, true]);
    expect(recorder.messages.map((m) => m.req)).toEqual([
      { op: ABI.op.HELLO, seq: 1, sid: 0, cid: 0n, arg: client.pid, local: null, remote: null, name: 'ctl-client' },
      {
        op: ABI.op.CONNECT, seq: 2, sid: 7, cid: 0x1122334455667788n, arg: 42, name: '',
        local: { family: 4, address: '127.0.0.1', port: 40000, scopeId: 0 },
        remote: { family: 6, address: 'fe80::1', port: 5001, scopeId: 3 },
      },
    ]);
    expect(server.clientCount).toBe(0);
    expect(server.protocolErrors).toBe(0);
    expect(conns).toHaveLength(1);
  });

  const malformed: Array<[string, RegExp]> = [
    ['truncated', /^protocol: message of 40 bytes, expected 96$/],
    ['oversize', /^protocol: message of 200 bytes, expected 96$/],
    ['badmagic', /^protocol: bad magic 0xdeadbeef$/],
    ['badop', /^protocol: unknown op 99$/],
    ['withfds', /^protocol: ancillary data is not allowed \(1 descriptors attached\)$/],
  ];

  it.each(malformed)('closes a client that sends %s, with an EPROTO error reply first', async (scenario, reason) => {
    const path = socketIn(tempDir());
    const { server, recorder } = startServer(path);
    const client = new CClient(path, scenario);
    const id = await recorder.clientOf(client.pid);
    expect(await recorder.closeReason(id)).toMatch(reason);
    // The header was readable in every case, so the error echoes the request's seq (40).
    await client.line(`reply event=${ABI.ev.ERROR} seq=40 err=71 nfds=0 magic=ok`);
    await client.line('eof');
    expect(await client.exited).toBe(0);
    expect(recorder.messages).toHaveLength(0);
    expect(server.protocolErrors).toBe(1);
    expect(server.clientCount).toBe(0);
  });

  it('keeps serving other clients while it drops a malformed one', async () => {
    const path = socketIn(tempDir());
    const { server, recorder } = startServer(path);
    const holder = new CClient(path, 'hold');
    const holderId = await recorder.clientOf(holder.pid);
    await holder.line('reply event=0 seq=1 err=0 nfds=0 magic=ok');

    const bad = new CClient(path, 'badmagic');
    const badId = await recorder.clientOf(bad.pid);
    expect(await recorder.closeReason(badId)).toMatch(/^protocol/);
    expect(await bad.exited).toBe(0);
    expect(server.protocolErrors).toBe(1);
    expect(server.clientCount).toBe(1);

    holder.send('next');
    await holder.line('reply event=0 seq=2 err=0 nfds=0 magic=ok');
    holder.send('next');
    await holder.line('reply event=0 seq=3 err=0 nfds=0 magic=ok');
    expect(recorder.closed.has(holderId)).toBe(false);
    holder.endInput();
    expect(await holder.exited).toBe(0);
    expect(await recorder.closeReason(holderId)).toBe('closed');
    expect(server.protocolErrors).toBe(1);
  });

  it('drops a client that does not read its replies instead of blocking', async () => {
    const path = socketIn(tempDir());
    const { server, recorder } = startServer(path);
    const client = new CClient(path, 'noread');
    const id = await recorder.clientOf(client.pid);
    expect(await recorder.closeReason(id)).toBe('stalled');
    expect(recorder.replyResults.at(-1)).toBe(false);
    expect(recorder.replyResults.filter((sent) => sent).length).toBeGreaterThan(0);
    await client.line(/^send-failed seq=\d+ errno=(EPIPE|ECONNRESET)$/);
    expect(server.clientCount).toBe(0);
    expect(server.protocolErrors).toBe(0);
  });

  it('keeps serving when a handler throws, and exposes the error', async () => {
    const path = socketIn(tempDir());
    const { server, recorder } = startServer(path);
    const boom = new Error('handler bug');
    const respond = recorder.respond;
    recorder.respond = (client, req) => {
      respond(client, req);
      if (req.seq === 1) throw boom;
    };
    const holder = new CClient(path, 'hold');
    const id = await recorder.clientOf(holder.pid);
    await holder.line('reply event=0 seq=1 err=0 nfds=0 magic=ok');
    expect(server.handlerErrors).toBe(1);
    expect(server.lastHandlerError).toBe(boom);
    holder.send('next');
    await holder.line('reply event=0 seq=2 err=0 nfds=0 magic=ok');
    holder.endInput();
    expect(await recorder.closeReason(id)).toBe('closed');
    expect(server.handlerErrors).toBe(1);
  });

  it('drops a client on request and checks the replies it is given', async () => {
    const path = socketIn(tempDir());
    const { server, recorder } = startServer(path);
    const holder = new CClient(path, 'hold');
    const id = await recorder.clientOf(holder.pid);
    await holder.line('reply event=0 seq=1 err=0 nfds=0 magic=ok');

    expect(() => server.reply(id, { event: 99, seq: 1 })).toThrow(RangeError);
    expect(() => server.reply(id, { event: 0, seq: -1 })).toThrow(RangeError);
    expect(() => server.reply(id, { event: 0, seq: 1, cid: 1 as unknown as bigint })).toThrow(TypeError);
    expect(() => server.reply(id, { event: 0, seq: 1 }, [0, 1, 2, 0])).toThrow(RangeError); // more than a reply ever carries
    const badFd = thrown(() => server.reply(id, { event: 0, seq: 1 }, [999_999, 999_998, 999_997]));
    expect((badFd as VtoeSystemError).code).toBe('EBADF');
    expect(server.clientCount).toBe(1); // the agent's mistake does not cost the client

    expect(server.reply(id + 1000, { event: 0, seq: 1 })).toBe(false);
    server.drop(id);
    expect(recorder.closed.get(id)).toBe('dropped');
    expect(server.clientCount).toBe(0);
    expect(server.reply(id, { event: 0, seq: 1 })).toBe(false);
    holder.endInput();
    expect(await holder.exited).toBe(0);
  });

  it('refuses to start where an agent already answers (EADDRINUSE)', async () => {
    const path = socketIn(tempDir());
    const { recorder } = startServer(path);
    const error = thrown(() => new ControlServer(path, new Recorder()));
    expect(error).toBeInstanceOf(VtoeSystemError);
    expect((error as VtoeSystemError).code).toBe('EADDRINUSE');
    expect((error as VtoeSystemError).message).toContain(`an agent is already running at ${path}`);
    // The first agent still owns the path and serves.
    const client = new CClient(path, 'valid');
    await client.line('reply event=0 seq=1 err=0 nfds=0 magic=ok');
    await client.exited;
    expect(recorder.messages.length).toBe(2);
  });

  it('replaces a stale socket that nobody listens on', async () => {
    const path = socketIn(tempDir());
    // Creates the directories, then closes (which unlinks); the stale socket comes after.
    startServer(path).server.close();
    const stale = new CClient(path, 'stale');
    await stale.line('stale');
    await stale.exited;
    expect(statSync(path).isSocket()).toBe(true);

    const { server, recorder } = startServer(path);
    const client = new CClient(path, 'valid');
    await client.line('reply event=0 seq=1 err=0 nfds=0 magic=ok');
    await client.exited;
    expect(recorder.messages.length).toBe(2);
    server.close();
    expect(existsSync(path)).toBe(false);
  });

  it('never removes a path that is not a socket (EEXIST)', () => {
    const dir = tempDir();
    const path = join(dir, 'agent.sock');
    writeFileSync(path, 'not a socket');
    expect((thrown(() => new ControlServer(path, new Recorder())) as VtoeSystemError).code).toBe('EEXIST');
    expect(statSync(path).isFile()).toBe(true);
  });

  it('closes idempotently, unlinks its socket, and lets a new agent take the path', () => {
    const path = socketIn(tempDir());
    const { server } = startServer(path);
    server.close();
    server.close();
    expect(server.closed).toBe(true);
    expect(existsSync(path)).toBe(false);
    expect(server.reply(1, { event: 0, seq: 1 })).toBe(false);
    const { server: again } = startServer(path);
    expect(again.closed).toBe(false);
  });

  it('validates its arguments', () => {
    const path = socketIn(tempDir());
    expect(() => new ControlServer(path, {} as ControlHandlers)).toThrow(TypeError);
    expect((thrown(() => new ControlServer(`${'x'.repeat(200)}/a.sock`, new Recorder())) as VtoeSystemError).code)
      .toBe('ENAMETOOLONG');
  });
});
