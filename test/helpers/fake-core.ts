// A core CA with a fake reply sink, fake shared links and fake sockets, for tests that drive it
// with requests in the orders processes can produce them (test/core-ca*.test.ts).
import { expect } from 'vitest';
import { ABI } from '../../src/abi.js';
import { resolveConfig } from '../../src/config.js';
import { createLogger, type Logger } from '../../src/log.js';
import { CoreCA, type ReplySink } from '../../src/agent/core-ca.js';
import { EventLog } from '../../src/agent/event-log.js';
import type { ShmHostCA, ShmLink } from '../../src/agent/host-ca-shm.js';
import { AgentCounters } from '../../src/agent/stats.js';
import type { ResolvedConfig } from '../../src/config.js';
import type { PolicyRule } from '../../src/policy.js';
import type { CtlReply, CtlRequest, Side, SideEnd, SockAddr, TcpSocketIdentity } from '../../src/native.js';

export const SERVER = 1;
export const CLIENT = 2;
export const addr = (port: number): SockAddr => ({ family: 4, address: '127.0.0.1', port, scopeId: 0 });

// Sockets the requests pass, by fake descriptor numbers no process ever has open: the kernel's
// word on each is what socketOf answers (tests of what the agent refuses change it).
export const LISTEN_FD = 7_000_000;
export const clientFd = (port: number) => 7_100_000 + port;
export const acceptedFd = (port: number) => 7_200_000 + port;
/** What the kernel says of each fake socket: a listener at 5000, and both ends of each rendezvous. */
export function fakeSocketOf(fd: number): TcpSocketIdentity {
  if (fd === LISTEN_FD) return { local: addr(5000), remote: null, listening: true, inAgentNetns: null };
  if (fd >= 7_200_000 && fd < 7_300_000) return { local: addr(5000), remote: addr(fd - 7_200_000), listening: false, inAgentNetns: true };
  if (fd >= 7_100_000 && fd < 7_200_000) return { local: addr(fd - 7_100_000), remote: addr(5000), listening: false, inAgentNetns: true };
  throw Object.assign(new Error('EBADF: not a socket'), { code: 'EBADF' });
}

export function setup(config: Partial<ResolvedConfig> = {}, logger: Logger = createLogger({ level: 'error', component: 'test' }),
  policy: PolicyRule[] = []) {
  const replies: Array<{ client: number; rep: CtlReply; fds?: number[] }> = [];
  const dropped: number[] = [];
  const sink: ReplySink = {
    reply: (client, rep, fds) => { replies.push({ client, rep, fds }); return true; },
    drop: (client) => { dropped.push(client); },
  };
  // What the agent did to each link, and a way to play the native side's end-of-side report.
  const links: Array<{
    rdShut: [boolean, boolean]; hungUp: Side[]; bells: Array<[Side, number]>; end?: (side: Side, how: SideEnd) => void;
    /** the kernel socket a late fallback relays over */
    relayedOver?: number;
    /** each ring's indices, as its producer and consumer left them */
    index: [{ head: number; tail: number }, { head: number; tail: number }];
  }> = [];
  const fakeLink = (): ShmLink => {
    const l: (typeof links)[number] = { rdShut: [false, false], hungUp: [], bells: [], index: [{ head: 0, tail: 0 }, { head: 0, tail: 0 }] };
    links.push(l);
    return {
      ringSize: 4096, mappedBytes: 4096 * 3, residentBytes: 4096 * 3, fdsFor: () => [10, 11, 12], releaseSide: () => {}, close: () => {},
      // Sockets 110 and 111 are this link's sides 0 and 1; 666 makes the native side throw.
      sideOfSocket: (fd) => {
        if (fd === 666) throw new Error('native failure');
        return fd === 110 ? 0 : fd === 111 ? 1 : -1;
      },
      regionFd: () => 10,
      peerBellFd: (side) => 20 + (1 - side), // the agent's copies of bells 20 (side 0's) and 21
      bellOp: (side, op) => { l.bells.push([side, op]); },
      watchEnds: (onEnd) => { l.end = onEnd; },
      hangUp: (side) => { l.hungUp.push(side); },
      relay: (fd) => { l.relayedOver = fd; },
      counters: () => ({
        rings: l.rdShut.map((rdShut, d) => ({ ...l.index[d], wakes: 0, grows: 0, fin: false, reset: false, rdShut, txWaiting: false })),
        cmState: [0, 0],
      } as never),
    };
  };
  const shm = { createLink: fakeLink, close: () => undefined } as unknown as ShmHostCA;
  const counters = new AgentCounters();
  const log = new EventLog();
  const core = new CoreCA(sink, shm, resolveConfig({}, { timewaitMs: 0, ...config }), policy, counters, log,
    logger);
  // Descriptors the agent closed; using one afterwards is an error, as it would be for real.
  const closed: number[] = [];
  const extraSockets = new Map<number, TcpSocketIdentity>();
  core.closeFd = (fd) => { closed.push(fd); };
  core.kernelListening = () => false; // no server without the shim, unless a test says so
  // Listener pages: what the agent last published on each, by the descriptor it sent.
  const pages = new Map<number, { waiting: number; closed: boolean }>();
  core.makeListenerPage = () => {
    const fd = 9_000_000 + pages.size;
    const page = { waiting: -1, closed: false };
    pages.set(fd, page);
    return { fd, setWaiting: (n) => { page.waiting = n; }, close: () => { page.closed = true; } };
  };
  core.socketOf = (fd) => {
    if (closed.includes(fd)) throw Object.assign(new Error('EBADF: closed'), { code: 'EBADF' });
    return extraSockets.get(fd) ?? fakeSocketOf(fd);
  };
  // The addresses alone, by whatever socketOf answers then (a test may replace it).
  core.endpointsOf = (fd) => core.socketOf(fd);
  let seq = 0;
  const send = (client: number, op: number, fields: Partial<CtlRequest> = {}): CtlReply | undefined => {
    const before = replies.length;
    core.handle(client, { op, seq: ++seq, sid: 0, cid: 0n, arg: 0, local: null, remote: null, name: '', ...fields });
    return replies.length > before ? replies.at(-1)!.rep : undefined;
  };
  core.processOpened(SERVER, { pid: 100, uid: 0 });
  core.processOpened(CLIENT, { pid: 200, uid: 0 });
  send(SERVER, ABI.op.HELLO, { name: 'server' });
  send(CLIENT, ABI.op.HELLO, { name: 'client' });
  const listenSid = send(SERVER, ABI.op.OPEN)!.sid!;
  expect(send(SERVER, ABI.op.LISTEN, { sid: listenSid, local: addr(5000), arg: 16, fd: LISTEN_FD })!.event).toBe(ABI.ev.ACK);
  /** REQ/REP: the client's CONNECT, answered with the active end's descriptors. */
  const connect = (clientPort: number) => {
    // SID 0, as the shim sends it: the agent opens the socket with the CONNECT.
    const rep = send(CLIENT, ABI.op.CONNECT, { sid: 0, local: addr(clientPort), remote: addr(5000), fd: clientFd(clientPort) })!;
    expect(rep.event).toBe(ABI.ev.CONNECT_RESPONSE);
    return { sid: rep.sid!, cid: rep.cid! };
  };
  const accept = (clientPort: number) => send(SERVER, ABI.op.ACCEPT, { sid: listenSid, fd: acceptedFd(clientPort) })!;
  /** REQ, RTU, then the server's claim: an established connection and the server's reply. */
  const establish = (clientPort: number) => {
    const { sid, cid } = connect(clientPort);
    send(CLIENT, ABI.op.ESTABLISH, { sid, cid });
    return { sid, cid, acc: accept(clientPort) };
  };
  return { core, send, connect, accept, establish, counters, log, dropped, replies, links, listenSid, closed, extraSockets, pages };
}

export type FakeCore = ReturnType<typeof setup>;
