// The core connection agent (VNET_Core_CA): hands out socket IDs, maps SIDs to shadow
// connections, keeps the listening-port registry and answers each process's control requests.
// Every request comes from a process the agent does not trust: it is checked against what that
// process owns before anything happens, and a bad one gets an error reply.
import { closeFd } from './close-fd.js';
import { constants as osConstants } from 'node:os';
import { ABI, ATTACH_BELL, BELL_REPLY, FALLBACK_REASON_COUNT, reasonName } from '../abi.js';
import {
  ListenerPage, tcpBindAnyPort, tcpBufferSizes, tcpEndpoints, tcpListening, tcpPeerAccepted, tcpSocketIdentity, type CtlReply, type CtlRequest,
  type SideEnd, type SockAddr, type TcpBufferSizes, type TcpEndpoints, type TcpSocketIdentity,
} from '../native.js';
import type { ResolvedConfig } from '../config.js';
import { decide, type PolicyRule } from '../policy.js';
import type { Logger } from '../log.js';
import { ListenerRegistry, type ListenerEntry } from './listener-registry.js';
import { canonical, isLocalAddress } from './local-addresses.js';
import { ShadowConnection, type Side } from './shadow-connection.js';
import { monotonicMs, ShortConnections, wireMs } from './short-connections.js';
import type { EventLog } from './event-log.js';
import type { AgentCounters, Refusal } from './stats.js';
import type { ShmHostCA, ShmLink } from './host-ca-shm.js';
import type { PassiveClaim, VerbsHostCA } from './host-ca-verbs.js';
import type { VerbsEndpoint } from './verbs-endpoint.js';

const { errno } = osConstants;

export interface ProcessRecord {
  client: number;
  pid: number;
  uid: number;
  program: string;
  sids: Set<number>;
  /** Requests of this process refused as unproven claims (the first few are logged). */
  refusals?: number;
}

export type SocketRecord =
  | { sid: number; client: number; kind: 'open' }
  | { sid: number; client: number; kind: 'listener'; listener: ListenerEntry }
  | { sid: number; client: number; kind: 'connection'; conn: LiveConnection; side: Side }
  | { sid: number; client: number; kind: 'verbs'; end: VerbsEndpoint };

export interface LiveConnection {
  shadow: ShadowConnection;
  link: ShmLink;
  local: SockAddr; // the active end's address
  remote: SockAddr; // the passive end's address
  programs: [string, string];
  pids: [number, number];
  listenerSid: number;
  pendingKey: string | null;
  timer?: NodeJS.Timeout;
  /**
   * The client's socket, passed with its CONNECT: the proof an ACCEPT is checked against, until
   * the ESTABLISH note says the rendezvous connected and it becomes ksock.
   */
  clientSock?: number;
  /** The kernel said at CONNECT that the client's socket is in the agent's namespace. */
  clientInAgentNetns?: boolean;
  /** Its addresses once connected, as keyByPort read them (they no longer change). */
  clientEndpoints?: TcpEndpoints;
  /** The client's kernel rendezvous socket, held until the server's shim claims the connection. */
  ksock?: number;
  /** When the kernel showed the server's end accepted with no claim yet (late fallback). */
  acceptedUnclaimedAt?: number;
  /** Late fallback: the agent plays the passive side, over the server's kernel socket. */
  relayed?: boolean;
  createdAt: number;
  /** Its first close was counted for the short-connection rule. */
  outcomeSeen?: boolean;
  /** When the connection first waited, both directions ended, for its readers to drain it. */
  drainingSince?: number;
}

/** How often pending connections are looked for in the kernel's table of TCP sockets. */
const LATE_ACCEPT_SCAN_MS = 50;
/**
 * How long the server's end may stay accepted without a claim before the agent takes the
 * passive side.  A server's shim claims right after its accept; this covers a busy machine.
 * Taking it too early is still correct (the connection then runs on kernel TCP), only slower.
 */
const LATE_ACCEPT_GRACE_MS = 200;
/**
 * Both directions ended (FIN) is not both readers done: the rings may still hold megabytes
 * (they grow for a reader that stalled).  The entry stays, counters and `vtoe ss` row true, until
 * they are read, the reader closes, or this long has passed (a reader that never reads).
 */
const DRAIN_WAIT_MS = 30_000;
const DRAIN_CHECK_MS = 20;
/** Short connections in a row that make a listener short (see short-connections.ts). */
const SHORT_WINDOW = 8;
/** Refusals logged per process; the rest are only counted. */
const REFUSALS_LOGGED = 20;
/** The most one FALLBACK note counts, whatever it says. */
const FALLBACK_NOTE_MAX = 1n << 20n;

/** The requests that get a reply (the others are notes). */
const RPC_OPS: ReadonlySet<number> = new Set([
  ABI.op.HELLO, ABI.op.OPEN, ABI.op.LISTEN, ABI.op.CONNECT, ABI.op.ACCEPT, ABI.op.ATTACH,
]);

function wantsReply(req: CtlRequest): boolean {
  return RPC_OPS.has(req.op) || (req.op === ABI.op.BELL && (req.arg & BELL_REPLY) !== 0);
}

/** What the core CA does with a listener page (src/native.ts ListenerPage; a fake in tests). */
export interface ListenerPagePort {
  readonly fd: number;
  setWaiting(n: number): void;
  close(): void;
}

/** Where replies go; the control server in production, a fake in tests. */
export interface ReplySink {
  reply(client: number, rep: CtlReply, fds?: number[]): boolean;
  drop(client: number): void;
}

export class CoreCA {
  readonly processes = new Map<number, ProcessRecord>();
  readonly sockets = new Map<number, SocketRecord>();
  readonly connections = new Map<bigint, LiveConnection>();
  readonly listeners = new ListenerRegistry();
  private readonly pending = new Map<string, LiveConnection>();
  /** Those of them not keyed by their client's port yet, by listener port (keyByPort). */
  private readonly unboundByPort = new Map<number, Set<LiveConnection>>();
  private lateAcceptScan?: NodeJS.Timeout;
  private nextSid = 1;
  /** The request being handled once it has its reply. */
  private repliedTo?: CtlRequest;
  private nextCid = 1n;
  /** Stopping: new connections and listeners are answered FALLBACK (kernel TCP). */
  draining = false;
  /** The verbs fabric's host CA, once the agent has opened it (null: no RDMA here). */
  verbs: VerbsHostCA | null = null;
  /** Listeners whose connections are too short to offload. */
  readonly short: ShortConnections;
  /** CLOCK_MONOTONIC in ms, the shims' clock for skip_until_ms (tests replace it). */
  now: () => number = monotonicMs;
  /** The kernel's word on a socket a request passed (tests replace it). */
  socketOf: (fd: number) => TcpSocketIdentity = tcpSocketIdentity;
  /** Only the addresses, of a socket whose kind and namespace socketOf gave before. */
  endpointsOf: (fd: number) => TcpEndpoints = tcpEndpoints;
  /** SO_SNDBUF and SO_RCVBUF of a socket (tests replace it). */
  buffersOf: (fd: number) => TcpBufferSizes = tcpBufferSizes;
  /** Binds an unbound client socket to a port the kernel picks (the verbs REQ names it). */
  bindAnyPort: (fd: number) => SockAddr = tcpBindAnyPort;
  /** Whether a kernel listener waits where a connect to an address lands (tests replace it). */
  kernelListening: (to: SockAddr) => boolean = tcpListening;
  /** Makes a listener page (tests replace it). */
  makeListenerPage: () => ListenerPagePort = () => new ListenerPage();
  /** Each registered listener's page, by SID. */
  private readonly pages = new Map<number, ListenerPagePort>();
  /** Offloaded connections waiting for a claim, by listener port (both fabrics). */
  private readonly waitingByPort = new Map<number, number>();
  private netnsBlindWarned = false;
  /** Closes a descriptor a request passed (tests replace it, to see each closed once). */
  closeFd: (fd: number) => void = closeFd;

  constructor(
    private readonly sink: ReplySink,
    private readonly shm: ShmHostCA,
    private readonly config: ResolvedConfig,
    private readonly policy: PolicyRule[],
    private readonly counters: AgentCounters,
    private readonly eventLog: EventLog,
    private readonly log: Logger,
    /** Called after every state change, so waiters can re-check without polling. */
    private readonly changed: () => void = () => {},
  ) {
    this.short = new ShortConnections({
      maxBytes: config.shortBytes, maxLifetimeMs: config.shortMs, window: SHORT_WINDOW, holdMs: config.shortHoldMs,
    });
  }

  get pendingCount(): number {
    return this.pending.size + (this.verbs?.pendingCount ?? 0);
  }

  allocateCid(): bigint {
    return this.nextCid++;
  }

  /** Offloaded connection ends held by this agent, on every fabric. */
  get connectionCount(): number {
    return this.connections.size + (this.verbs?.ends.size ?? 0);
  }

  processOpened(client: number, cred: { pid: number; uid: number }): void {
    this.processes.set(client, { client, pid: cred.pid, uid: cred.uid, program: '?', sids: new Set() });
    this.counters.processesSeen++;
  }

  /** The process closed its channel or died: its sockets close as the kernel would close them. */
  processClosed(client: number, reason: string): void {
    const proc = this.processes.get(client);
    if (!proc) return;
    this.log.debug('process channel closed', { pid: proc.pid, program: proc.program, reason });
    for (const sid of proc.sids) {
      try {
        this.closeSocket(sid, 0);
      } catch (err) {
        // One socket's surprise must not keep the process (and its other sockets) around.
        this.log.error('closing a socket of a departed process failed', { sid, error: String(err) });
      }
    }
    this.processes.delete(client);
    this.changed();
  }

  handle(client: number, req: CtlRequest): void {
    this.repliedTo = undefined;
    try {
      this.dispatch(client, req);
    } catch (err) {
      // A bug here must not leave the process waiting out its timeout for a reply.
      this.log.error('a request failed inside the agent', { op: req.op, error: String(err) });
      if (wantsReply(req) && this.repliedTo !== req) this.reply(client, req, { event: ABI.ev.ERROR, err: errno.EIO });
    } finally {
      if (req.fd !== undefined) this.closeFd(req.fd); // a descriptor nobody took
      this.changed();
    }
  }

  private dispatch(client: number, req: CtlRequest): void {
    const proc = this.processes.get(client);
    if (!proc) return;
    const op = req.op;
    if (op !== ABI.op.HELLO && proc.program === '?') {
      this.fail(client, req, errno.EPROTO, 'first message must be HELLO');
      return;
    }
    switch (op) {
      case ABI.op.HELLO: return this.hello(proc, req);
      case ABI.op.OPEN: return this.open(proc, req);
      case ABI.op.LISTEN: return this.listen(proc, req);
      case ABI.op.CONNECT: return this.connect(proc, req);
      case ABI.op.ESTABLISH: return this.establish(proc, req);
      case ABI.op.ACCEPT: return this.accept(proc, req);
      case ABI.op.SHUTDOWN: return this.shutdown(proc, req);
      case ABI.op.CLOSE: return this.closeSocket(req.sid, req.arg, proc);
      case ABI.op.FALLBACK: return this.noteFallback(proc, req);
      case ABI.op.PEER_RESET: return this.peerReset(proc, req);
      case ABI.op.ATTACH: return this.attach(proc, req);
      case ABI.op.BELL: return this.bell(proc, req);
      default: this.fail(client, req, errno.EPROTO, `unknown op ${op}`);
    }
  }

  private hello(proc: ProcessRecord, req: CtlRequest): void {
    if (proc.program !== '?') return this.fail(proc.client, req, errno.EPROTO, 'second HELLO');
    proc.program = printableName(req.name) || 'unknown';
    this.reply(proc.client, req, { event: ABI.ev.ACK, spinUs: this.config.spinUs, ringSize: this.config.ringSize });
  }

  private open(proc: ProcessRecord, req: CtlRequest): void {
    if (this.atProcessLimit(proc)) return this.fallback(proc.client, req, ABI.fb.PROCESS_LIMIT);
    this.reply(proc.client, req, { event: ABI.ev.ACK, sid: this.openSocket(proc) });
  }

  /** The process may not hold more sockets in the agent (VTOE_MAX_PROCESS_SOCKETS). */
  private atProcessLimit(proc: ProcessRecord): boolean {
    return proc.sids.size >= this.config.maxProcessSockets;
  }

  private openSocket(proc: ProcessRecord): number {
    const sid = this.allocateSid();
    this.sockets.set(sid, { sid, client: proc.client, kind: 'open' });
    proc.sids.add(sid);
    return sid;
  }

  private listen(proc: ProcessRecord, req: CtlRequest): void {
    const sock = this.ownedOpenSocket(proc, req);
    if (!sock) return;
    const local = req.local;
    if (!local) return this.fail(proc.client, req, errno.EINVAL, 'LISTEN without a local address');
    // Its socket, bound there: the shim registers just before the kernel's listen(), so that a
    // client already knocking is offloaded too; it need not listen yet, but never be connected.
    const id = this.identify(req.fd);
    if (!id || id.remote !== null || !sameEndpoint(id.local, local)) {
      this.refuse(proc, 'listen-unproven', `LISTEN at port ${local.port} without a socket bound there`);
      return this.fallback(proc.client, req, ABI.fb.UNVERIFIED);
    }
    const verdict = decide(this.policy, { program: proc.program, role: 'listen', address: local.address, port: local.port });
    if (verdict.action === 'tcp') return this.fallback(proc.client, req, ABI.fb.POLICY);
    if (this.draining) return this.fallback(proc.client, req, ABI.fb.RESOURCES);
    const listener: ListenerEntry = {
      sid: sock.sid, family: local.family, address: local.address, port: local.port, backlog: req.arg,
      program: proc.program, buffers: this.askKernel(req.fd, (f) => this.buffersOf(f)),
    };
    this.listeners.add(listener);
    this.sockets.set(sock.sid, { sid: sock.sid, client: proc.client, kind: 'listener', listener });
    const page = this.openListenerPage(listener);
    this.reply(proc.client, req, { event: ABI.ev.ACK, sid: sock.sid }, page ? [page.fd] : undefined);
  }

  private connect(proc: ProcessRecord, given: CtlRequest): void {
    const { local, remote } = given;
    if (!local || !remote) return this.fail(proc.client, given, errno.EINVAL, 'CONNECT needs both addresses');
    // SID 0: the socket is opened here, saving the client an OPEN round trip per connection.
    if (given.sid === 0 && this.atProcessLimit(proc)) return this.fallback(proc.client, given, ABI.fb.PROCESS_LIMIT);
    const req = given.sid === 0 ? { ...given, sid: this.openSocket(proc) } : given;
    const sock = this.ownedOpenSocket(proc, req);
    if (!sock) return;
    const verdict = decide(this.policy, { program: proc.program, role: 'connect', address: remote.address, port: remote.port });
    if (verdict.action === 'tcp') return this.fallback(proc.client, req, ABI.fb.POLICY, this.kernelHoldUntil());
    if (this.draining) return this.fallback(proc.client, req, ABI.fb.RESOURCES);
    // The port it names is the one its socket is bound to: the server's side is keyed by it.
    // Port 0: not bound yet; the kernel picks the port at the rendezvous (see keyByPort).
    const id = this.identify(req.fd);
    if (!id || id.listening || id.local.port !== local.port) {
      this.refuse(proc, 'connect-unproven', `CONNECT from port ${local.port} without a socket bound there`);
      return this.fallback(proc.client, req, ABI.fb.UNVERIFIED);
    }
    if (id.inAgentNetns === false) {
      this.refuse(proc, 'foreign-netns', `CONNECT from port ${local.port} with a socket of another network namespace`);
      return this.fallback(proc.client, req, ABI.fb.UNVERIFIED);
    }
    const onThisHost = isLocalAddress(remote.address);
    const fabric = this.config.fabric;
    // Forced verbs goes through rdma_cm even here, so one host exercises the remote path
    // (a missing listener is then a REJ from the passive agent, as it would be elsewhere).
    if (this.verbs && (fabric === 'verbs' || (fabric === 'auto' && !onThisHost))) {
      const rendezvous = given.fd!; // identify() saw it: the client's own socket
      given.fd = undefined; // connectVerbs owns it now (req may be a copy of given)
      return this.connectVerbs(proc, req, sock.sid, rendezvous);
    }
    if (!onThisHost) return this.fallback(proc.client, req, ABI.fb.NO_FABRIC, this.kernelHoldUntil());
    const listener = this.listeners.find(remote.family, remote.address, remote.port);
    if (!listener) {
      // A server without the shim: its clients need not ask for a while.  Nothing listening at
      // all (a client retrying until its server is up): no hold, or the first connection that
      // finds the server, offloaded or not, would stay on kernel TCP.
      // (The listeners are read only when there is a hold to give: a dump per family.)
      const until = this.kernelHoldUntil();
      const hold = until > 0 && this.listensOnKernel(remote) ? until : 0;
      return this.fallback(proc.client, req, ABI.fb.PEER_NOT_OFFLOADED, hold);
    }
    // One rendezvous, one connection: a second claim on it is refused, never swapped in.
    if (local.port !== 0 && this.pending.has(pendingKey(listener.port, local.port))) {
      this.refuse(proc, 'connect-duplicate', `CONNECT from port ${local.port} that another connection waits on`);
      return this.fallback(proc.client, req, ABI.fb.UNVERIFIED);
    }
    const short = this.short.decide(listener.sid, this.now());
    if (!short.offload) return this.fallback(proc.client, req, ABI.fb.SHORT_LIVED, short.skipUntil);
    if (this.connectionCount >= this.config.maxConnections) return this.fallback(proc.client, req, ABI.fb.RESOURCES);

    const cid = this.nextCid++;
    let link: ShmLink;
    try {
      // Rings that hold what the two ends' kernel buffers would (SO_SNDBUF, SO_RCVBUF).
      const buffers = this.askKernel(req.fd, (f) => this.buffersOf(f));
      link = this.shm.createLink(cid, buffers && listener.buffers ? { client: buffers, server: listener.buffers } : undefined);
    } catch (err) {
      this.log.warn('cannot create a shared ring; falling back to kernel TCP', { error: String(err) });
      return this.fallback(proc.client, req, ABI.fb.RESOURCES);
    }
    try {
      link.watchEnds((side, how) => this.sideEnded(cid, side, how));
    } catch (err) {
      link.close();
      this.log.warn('cannot watch a shared ring; falling back to kernel TCP', { error: String(err) });
      return this.fallback(proc.client, req, ABI.fb.RESOURCES);
    }
    const shadow = new ShadowConnection(cid, 'shm', sock.sid, this.eventLog);
    shadow.requestAndReply();
    this.counters.event(ABI.ev.CONNECT_REQUEST);
    const listenerProc = this.processes.get(this.sockets.get(listener.sid)?.client ?? -1);
    const conn: LiveConnection = {
      shadow, link, local, remote, listenerSid: listener.sid,
      programs: [proc.program, listenerProc?.program ?? '?'], pids: [proc.pid, 0],
      pendingKey: local.port !== 0 ? pendingKey(listener.port, local.port) : unboundKey(listener.port, cid),
      createdAt: Date.now(), clientSock: given.fd,
      clientInAgentNetns: id.inAgentNetns === true,
    };
    given.fd = undefined; // the connection owns it now (req may be a copy of given)
    this.connections.set(cid, conn);
    this.pending.set(conn.pendingKey!, conn);
    if (local.port === 0) this.unbound(listener.port).add(conn);
    this.waitingChanged(remote.port, 1); // before the reply: the server may accept right after
    this.sockets.set(sock.sid, { sid: sock.sid, client: proc.client, kind: 'connection', conn, side: 0 });
    const sent = this.reply(proc.client, req, {
      event: ABI.ev.CONNECT_RESPONSE, sid: sock.sid, cid, fabric: ABI.fabric.SHM, side: 0,
      ringSize: link.ringSize, spinUs: this.config.spinUs,
    }, link.fdsFor(0));
    link.releaseSide(0);
    if (!sent) this.discard(conn);
  }

  /**
   * REQ over the verbs fabric; the reply waits for the REP (or a reason to fall back).  The
   * client's socket (rendezvous, owned) stays with the connection until the server's process
   * claims it, for a late fallback (VerbsHostCA.carryOverKernel).
   */
  private connectVerbs(proc: ProcessRecord, given: CtlRequest, sid: number, rendezvous: number): void {
    if (this.connectionCount >= this.config.maxConnections) {
      this.closeFd(rendezvous);
      return this.fallback(proc.client, given, ABI.fb.RESOURCES);
    }
    // The REQ names the client's port, so it must have one before the rendezvous exists.
    let req = given;
    if (given.local!.port === 0) {
      try {
        req = { ...given, local: this.bindAnyPort(rendezvous) };
      } catch (err) {
        this.log.warn('cannot bind a connecting socket to a port; falling back to kernel TCP', { error: String(err) });
        this.closeFd(rendezvous);
        return this.fallback(proc.client, given, ABI.fb.RESOURCES);
      }
    }
    this.verbs!.connect({ sid, local: req.local!, remote: req.remote!, pid: proc.pid, program: proc.program }, (outcome) => {
      const sock = this.sockets.get(sid);
      const alive = this.processes.get(proc.client) === proc && sock?.kind === 'open' && sock.client === proc.client;
      if (outcome.kind === 'connected') this.verbs!.keepRendezvous(outcome.end, rendezvous);
      else this.closeFd(rendezvous);
      if (outcome.kind === 'fallback') {
        // No fabric to that host (a silent one, or no route): its connections need not ask
        // for a while.  A remote REJ says nothing of what listens there: no hold.
        const hold = outcome.reason === ABI.fb.NO_FABRIC ? this.kernelHoldUntil() : 0;
        if (alive) this.fallback(proc.client, req, outcome.reason, hold);
        this.changed();
        return;
      }
      const { end } = outcome;
      if (!alive) {
        this.verbs!.abandon(end);
        return;
      }
      this.sockets.set(sid, { sid, client: proc.client, kind: 'verbs', end });
      const sent = this.reply(proc.client, req, {
        event: ABI.ev.CONNECT_RESPONSE, sid, cid: end.cid, fabric: ABI.fabric.VERBS, side: 0,
        ringSize: outcome.ringSize, spinUs: this.config.spinUs,
      }, outcome.fds);
      this.verbs!.handedOut(end);
      if (!sent) this.verbs!.abandon(end);
      this.changed();
    });
  }

  private establish(proc: ProcessRecord, req: CtlRequest): void {
    const sock = this.sockets.get(req.sid);
    if (sock?.kind === 'verbs' && sock.client === proc.client && sock.end.cid === req.cid) {
      this.verbs?.rendezvousDone(sock.end);
      return;
    }
    // Gone already: its socket was closed everywhere, and the watch on its fd can be read
    // before notes the process sent earlier.
    if (!sock) return;
    if (sock.client !== proc.client || sock.kind !== 'connection' || sock.side !== 0
      || sock.conn.shadow.cid !== req.cid) {
      return this.violation(proc, req, 'ESTABLISH for a connection it does not own');
    }
    // The passive end's ACCEPT may have been read first (channels are read in event-loop
    // order, not send order); it already stood for the RTU.
    if (sock.conn.shadow.ends[0].cm === 'REP_RCVD') this.readyToUse(sock.conn);
    // Not claimed yet: keep the client's kernel socket, in case the server takes the
    // connection on kernel TCP after all (see lateFallback).
    const { conn } = sock;
    this.keyByPort(conn); // its port exists now: ACCEPTs find it by it
    if (conn.clientSock !== undefined && conn.pendingKey !== null && conn.ksock === undefined) {
      conn.ksock = conn.clientSock;
      conn.clientSock = undefined;
      this.watchLateAccepts();
    }
  }

  /**
   * A process holds a connection's socket without its region: it inherited the socket over
   * exec or was passed it with SCM_RIGHTS (processes keep no region descriptor).  The socket
   * itself, passed with the request, is the proof: only a holder of that socket can send it.
   */
  private attach(proc: ProcessRecord, req: CtlRequest): void {
    const conn = this.connections.get(req.cid);
    const side = conn && req.fd !== undefined ? conn.link.sideOfSocket(req.fd) : -1;
    if (!conn || side === -1) {
      return this.fail(proc.client, req, errno.ENOENT, 'ATTACH without a socket of that connection');
    }
    // With ATTACH_BELL, also the peer's doorbell: the process is about to lose its channel
    // to a seccomp filter and will have to ring its peer itself.
    const fds = [conn.link.regionFd()];
    if (req.arg & ATTACH_BELL) fds.push(conn.link.peerBellFd(side));
    this.reply(proc.client, req, {
      event: ABI.ev.ACK, sid: conn.shadow.ends[side].sid ?? 0, cid: conn.shadow.cid, fabric: ABI.fabric.SHM,
      side, ringSize: conn.link.ringSize, spinUs: this.config.spinUs,
    }, fds);
  }

  /**
   * A process without its peer's doorbell asks the agent to use the agent's copy.  Its socket,
   * passed with the note, says which side it is: nobody else can ring, drain or shut a bell.
   */
  private bell(proc: ProcessRecord, req: CtlRequest): void {
    const op = req.arg & ~BELL_REPLY;
    if (!(Object.values(ABI.bell) as number[]).includes(op) || (req.arg & ~(BELL_REPLY | 0xff)) !== 0) {
      return this.violation(proc, req, `BELL op ${req.arg}`);
    }
    const conn = this.connections.get(req.cid);
    const side = conn && req.fd !== undefined ? conn.link.sideOfSocket(req.fd) : -1;
    // Freed meanwhile, its sockets gone: nothing left to wake.  A live one: only its own socket.
    if (conn) {
      if (side === -1) return this.violation(proc, req, 'BELL without a socket of that connection');
      conn.link.bellOp(side, op);
    }
    if (wantsReply(req)) this.reply(proc.client, req, { event: ABI.ev.ACK, cid: req.cid });
  }

  /** RTU: the kernel rendezvous connected, the connection carries data from now on. */
  private readyToUse(conn: LiveConnection): void {
    conn.shadow.readyToUse();
    this.counters.connectionOffloaded(conn.programs);
    this.counters.event(ABI.ev.CONNECT_ESTABLISHED);
  }

  private accept(proc: ProcessRecord, req: CtlRequest): void {
    // A kernel client, by the ports the request names: nothing waits there, so nothing can be
    // claimed and its socket need not prove anything.  Ports that lie only keep the process on
    // kernel TCP; a connection it thereby left unclaimed is relayed (lateFallback).
    if (req.fd !== undefined && this.nothingWaitsOn(req)) return this.answerKernelClient(proc, req);
    // The accepted socket is the capability: it alone says which connection, and only the
    // process that accepted the rendezvous (or one it gave the socket to) holds it.  The
    // addresses in the request are not trusted.
    const id = this.identify(req.fd);
    if (!id?.remote) return this.refuseAccept(proc, req, 'accept-unproven', 'ACCEPT without its accepted socket');
    if (id.inAgentNetns === false) {
      return this.refuseAccept(proc, req, 'foreign-netns', 'ACCEPT with a socket of another network namespace');
    }
    if (id.inAgentNetns === null) this.warnNetnsBlind();
    const { local, remote } = id;
    const conn = this.pending.get(pendingKey(local.port, remote.port)) ?? this.findUnbound(local.port, remote.port);
    if (conn && !this.sameRendezvous(conn, id)) {
      return this.refuseAccept(proc, req, 'accept-not-party', `ACCEPT of port ${remote.port} with a socket of another connection`);
    }
    if (!conn) {
      const onKernel = (): void => this.answerKernelClient(proc, req);
      // A remote client's connection may still be proving itself: then the answer comes later.
      const waits = this.verbs?.claimPassive(local.port, remote, (claim) => {
        if (this.processes.get(proc.client) !== proc) {
          if (claim) this.verbs!.abandon(claim.end); // the process went meanwhile
          return;
        }
        if (claim) this.acceptVerbs(proc, req, remote, claim);
        else onKernel();
      });
      if (!waits) onKernel();
      return;
    }
    if (this.atProcessLimit(proc)) {
      // The server keeps its kernel socket; the agent carries the client's stream over it (or
      // its late-accept scan will, once the client's RTU arrived).
      this.counters.fallback(reasonName(ABI.fb.PROCESS_LIMIT), proc.program);
      this.lateFallback(conn, 'the server process holds VTOE_MAX_PROCESS_SOCKETS');
      this.reply(proc.client, req, { event: ABI.ev.FALLBACK, reason: ABI.fb.PROCESS_LIMIT });
      return;
    }
    this.unpend(conn);
    this.releaseClientSockets(conn); // claimed: the server's shim parks its end until this FIN
    // Only a process holding the listener could accept the rendezvous, and only after the
    // active end's kernel connect succeeded: that is the RTU, even if its note is still queued.
    if (conn.shadow.ends[0].cm === 'REP_RCVD') this.readyToUse(conn);
    const sid = this.allocateSid();
    conn.shadow.ends[1].sid = sid;
    conn.pids[1] = proc.pid;
    conn.programs[1] = proc.program;
    conn.local = remote; // the active end bound a wildcard; the server sees its real address
    proc.sids.add(sid);
    this.sockets.set(sid, { sid, client: proc.client, kind: 'connection', conn, side: 1 });
    const sent = this.reply(proc.client, req, {
      event: ABI.ev.CONNECT_ESTABLISHED, sid, cid: conn.shadow.cid, fabric: ABI.fabric.SHM, side: 1,
      ringSize: conn.link.ringSize, spinUs: this.config.spinUs,
    }, conn.link.fdsFor(1));
    conn.link.releaseSide(1);
    if (!sent) this.closeSocket(sid, ABI.close.RESET);
  }

  /** No connection waits for a claim on the ports an ACCEPT names, on either fabric. */
  private nothingWaitsOn(req: CtlRequest): boolean {
    const { local, remote } = req;
    if (!local || !remote || local.port === 0 || remote.port === 0) return false;
    return !this.pending.has(pendingKey(local.port, remote.port)) && !this.unboundByPort.get(local.port)?.size
      && !this.verbs?.waitsOnPorts(local.port, remote.port);
  }

  private answerKernelClient(proc: ProcessRecord, req: CtlRequest): void {
    this.counters.kernelAccepted++;
    this.reply(proc.client, req, {
      event: ABI.ev.FALLBACK, reason: ABI.fb.PEER_NOT_OFFLOADED, skipUntilMs: wireMs(this.acceptQuietUntil(proc, req.sid)),
    });
  }

  private acceptVerbs(proc: ProcessRecord, req: CtlRequest, remote: SockAddr,
    claimed: PassiveClaim): void {
    const { end } = claimed;
    const sid = this.allocateSid();
    end.sid = sid;
    end.pid = proc.pid;
    end.program = proc.program;
    end.remote = remote; // the kernel's view of the client, as accept() saw it
    proc.sids.add(sid);
    this.sockets.set(sid, { sid, client: proc.client, kind: 'verbs', end });
    const sent = this.reply(proc.client, req, {
      event: ABI.ev.CONNECT_ESTABLISHED, sid, cid: end.cid, fabric: ABI.fabric.VERBS, side: 1,
      ringSize: claimed.ringSize, spinUs: this.config.spinUs,
    }, claimed.fds);
    this.verbs!.handedOut(end);
    if (!sent) this.verbs!.abandon(end);
  }

  private shutdown(proc: ProcessRecord, req: CtlRequest): void {
    const sock = this.sockets.get(req.sid);
    if (!sock) return; // closed everywhere meanwhile (see establish)
    if (sock.client !== proc.client) return this.violation(proc, req, 'SHUTDOWN of a socket it does not own');
    if (sock.kind !== 'connection') return;
    const how = req.arg; // SHUT_RD = 0, SHUT_WR = 1, SHUT_RDWR = 2
    if (how === 1 || how === 2) {
      sock.conn.shadow.fin(sock.side);
      this.afterClose(sock.conn);
    }
  }

  /** CLOSE note, or the owner went away (flags 0: the kernel would send a FIN). */
  private closeSocket(sid: number, flags: number, proc?: ProcessRecord): void {
    const sock = this.sockets.get(sid);
    if (!sock) return;
    if (proc && sock.client !== proc.client) {
      this.log.warn('CLOSE of a socket the process does not own', { pid: proc.pid, sid });
      return;
    }
    this.sockets.delete(sid);
    this.processes.get(sock.client)?.sids.delete(sid);
    if (sock.kind === 'listener') return this.closeListener(sock.listener);
    if (sock.kind === 'verbs') return this.verbs?.sidClosed(sock.end, flags);
    if (sock.kind !== 'connection') return;
    const { conn, side } = sock;
    conn.shadow.ends[side].closed = true;
    this.noteOutcome(conn);
    // Already disconnected (the peer reset it, and its TIMEWAIT may even be over): nothing to
    // send, only to free the entry once both ends are closed.
    if (conn.shadow.finished || conn.shadow.inTimewait) return this.afterClose(conn);
    // Closed before any server took it: what it wrote must still reach the server, which
    // may yet accept it on kernel TCP (kernel TCP would deliver it, then the FIN).
    if (!(flags & ABI.close.ABORTED) && side === 0 && conn.ksock !== undefined) {
      this.lateFallback(conn, 'the client closed before the server accepted');
    }
    if (flags & ABI.close.ABORTED || !conn.shadow.established) {
      conn.shadow.reject();
      this.counters.rejected++;
      this.counters.event(ABI.ev.CONNECT_REJECTED);
      this.discard(conn);
      return;
    }
    if (flags & ABI.close.RESET) conn.shadow.reset(side);
    else conn.shadow.fin(side);
    this.afterClose(conn);
  }

  /**
   * A side's socket is gone from every process and the rings say how it ended (the native
   * side already made the peer's fd read so).  That closes the socket, whichever process held
   * it last: a forking server's child closes the accepted socket its parent owns, and no
   * CLOSE note of the owner ever comes.  A reset is a reset for the CM too, whether its CLOSE
   * note or its process's end reached us first (those record a FIN).
   */
  private sideEnded(cid: bigint, side: Side, how: SideEnd): void {
    const conn = this.connections.get(cid);
    this.log.debug('a side of a connection is gone from every process', { cid: String(cid), side, how });
    if (!conn || (conn.relayed && side === 1)) return; // the relay's end: relayEnded
    const sid = conn.shadow.ends[side].sid;
    const sock = sid === null ? undefined : this.sockets.get(sid);
    if (sid !== null && sock?.kind === 'connection' && sock.conn === conn && sock.side === side) {
      this.closeSocket(sid, how === 'reset' ? ABI.close.RESET : 0);
    } else if (how === 'reset') {
      conn.shadow.reset(side);
      this.afterClose(conn);
    }
    this.changed();
  }

  /** The process wrote after its peer's socket was gone: answer as the peer's kernel would. */
  private peerReset(proc: ProcessRecord, req: CtlRequest): void {
    const sock = this.sockets.get(req.sid);
    if (!sock) return; // closed everywhere meanwhile (see establish)
    if (sock.client !== proc.client) return this.violation(proc, req, 'PEER_RESET of a socket it does not own');
    if (sock.kind === 'verbs') {
      if (sock.end.cid !== req.cid) return;
      if (!this.verbs?.writtenAfterPeerClosed(sock.end)) this.violation(proc, req, 'PEER_RESET while its peer still reads');
      return;
    }
    // Not ours to answer on another fabric, or once the connection was freed (its fds hung up).
    if (sock.kind !== 'connection' || sock.conn.shadow.cid !== req.cid || !this.connections.has(req.cid)) return;
    const ring = sock.conn.link.counters().rings[sock.side];
    if (!ring.rdShut) return this.violation(proc, req, 'PEER_RESET while its peer still reads');
    sock.conn.link.hangUp(sock.side);
  }

  /**
   * Until when the process accepting on listener `sid` need not ask about its new connections:
   * none will be offloaded (short.decide refuses them) and none is pending from before.
   */
  private acceptQuietUntil(proc: ProcessRecord, sid: number): number {
    const sock = this.sockets.get(sid);
    if (sock?.kind !== 'listener' || sock.client !== proc.client) return 0;
    for (const conn of this.pending.values()) if (conn.listenerSid === sid) return 0;
    if (this.verbs?.hasPassiveFor(sid)) return 0;
    return this.short.quietUntil(sid, this.now());
  }

  /** What a listener's offloaded connection did, once one end closes. */
  private noteOutcome(conn: LiveConnection): void {
    if (conn.outcomeSeen || !conn.shadow.established) return;
    conn.outcomeSeen = true;
    const { rings } = conn.link.counters();
    this.short.ended(conn.listenerSid, rings[0].head + rings[1].head, Date.now() - conn.createdAt, this.now());
  }

  /** The listener as the verbs fabric may offload to it: not while it is short. */
  offloadableListener(family: 4 | 6, address: string, port: number): ListenerEntry | undefined {
    const listener = this.listeners.find(family, address, port);
    return listener && !this.short.quietUntil(listener.sid, this.now()) ? listener : undefined;
  }

  private closeListener(listener: ListenerEntry): void {
    this.listeners.remove(listener.sid);
    this.pages.get(listener.sid)?.close();
    this.pages.delete(listener.sid);
    this.short.forget(listener.sid);
    this.verbs?.listenerClosed(listener.sid);
    // Connections nobody accepted are reset, as the kernel resets a closed listener's queue.
    for (const conn of [...this.pending.values()]) {
      if (conn.listenerSid !== listener.sid) continue;
      // With the client's kernel socket held, the kernel decides, as for any TCP client: the
      // socket is reset if the listener is really gone, or accepted by whoever holds it still
      // (a program it was passed to without the shim).
      if (conn.ksock !== undefined) {
        this.lateFallback(conn, 'its listener left the agent');
        continue;
      }
      conn.shadow.reset(1);
      this.discard(conn);
    }
  }

  /**
   * Once both directions are done the CM entry waits in TIMEWAIT; it is freed when that has
   * expired and both ends have closed their sockets (an end may stay open after shutdown).
   */
  private afterClose(conn: LiveConnection): void {
    const allClosed = conn.shadow.ends.every((e) => e.closed);
    if (conn.shadow.finished && allClosed && !this.awaitDrain(conn)) return this.discard(conn);
    if (!conn.shadow.inTimewait || conn.timer) return;
    this.counters.event(ABI.ev.DISCONNECTED);
    conn.timer = setTimeout(() => {
      conn.timer = undefined;
      conn.shadow.timewaitDone();
      this.afterClose(conn);
      this.changed();
    }, this.config.timewaitMs);
    conn.timer.unref();
  }

  /** True if conn's readers still have bytes to read: afterClose looks again shortly. */
  private awaitDrain(conn: LiveConnection): boolean {
    if (conn.timer) return true;
    const { rings } = conn.link.counters();
    // Ring d is read by side 1-d: a reader that was reset, or closed, reads nothing more.
    const unread = !rings[0].reset && !rings[1].reset && rings.some((r) => r.head !== r.tail && !r.rdShut);
    const now = Date.now();
    if (!unread || now - (conn.drainingSince ??= now) >= DRAIN_WAIT_MS) return false;
    conn.timer = setTimeout(() => {
      conn.timer = undefined;
      this.afterClose(conn);
      this.changed();
    }, DRAIN_CHECK_MS);
    conn.timer.unref();
    return true;
  }

  private discard(conn: LiveConnection): void {
    if (conn.timer) clearTimeout(conn.timer);
    this.unpend(conn);
    this.releaseClientSockets(conn);
    const c = conn.link.counters();
    this.counters.closedBytesSent += c.rings[0].head + c.rings[1].head;
    this.counters.closedBytesReceived += c.rings[0].tail + c.rings[1].tail;
    this.counters.closedDoorbells += c.rings[0].wakes + c.rings[1].wakes;
    this.counters.closedRingGrowths += c.rings[0].grows + c.rings[1].grows;
    conn.link.close();
    this.connections.delete(conn.shadow.cid);
    for (const end of conn.shadow.ends) {
      if (end.sid === null) continue;
      const sock = this.sockets.get(end.sid);
      if (sock?.kind === 'connection' && sock.conn === conn && end.closed) this.sockets.delete(end.sid);
    }
  }

  /**
   * Late fallback: the server took (or may yet take) the connection on kernel TCP, over the
   * client's rendezvous socket, while the client already writes into its ring.  The agent
   * becomes the passive side and carries both directions between the ring and that socket,
   * so nothing the client wrote is stranded.  A later ACCEPT for it gets FALLBACK.
   */
  private lateFallback(conn: LiveConnection, why: string): void {
    const fd = conn.ksock;
    if (fd === undefined) return;
    conn.ksock = undefined;
    this.unpend(conn);
    if (conn.shadow.ends[0].cm === 'REP_RCVD') this.readyToUse(conn);
    conn.relayed = true;
    this.log.info('late fallback: the agent carries the connection over kernel TCP', { cid: String(conn.shadow.cid), why });
    const cid = conn.shadow.cid;
    try {
      conn.link.relay(fd, (how) => this.relayEnded(cid, how)); // owns fd from here on
    } catch (err) {
      this.log.error('cannot relay a late-fallback connection; resetting it', { cid: String(cid), error: String(err) });
      this.relayEnded(cid, 'reset');
    }
  }

  /** The relay (the passive side of a late fallback) is done: that side closed. */
  private relayEnded(cid: bigint, how: SideEnd): void {
    const conn = this.connections.get(cid);
    if (!conn || conn.shadow.ends[1].closed) return;
    conn.shadow.ends[1].closed = true;
    if (how === 'reset') conn.shadow.reset(1);
    else conn.shadow.fin(1);
    this.afterClose(conn);
    this.changed();
  }

  /**
   * While a connection waits for its server's claim with the client's kernel socket held,
   * ask the kernel about the server's end of that socket (one sock_diag lookup): accepted
   * (it has an inode) and still unclaimed for LATE_ACCEPT_GRACE_MS means a process without
   * the shim or the agent took it.  Only connections older than one period are looked at:
   * most are claimed at once.
   */
  private watchLateAccepts(): void {
    if (this.lateAcceptScan) return;
    this.lateAcceptScan = setInterval(() => {
      const now = Date.now();
      const waiting = [...this.pending.values()].filter((c) => c.ksock !== undefined);
      if (waiting.length === 0) {
        clearInterval(this.lateAcceptScan);
        this.lateAcceptScan = undefined;
        return;
      }
      let relayed = false;
      for (const conn of waiting) {
        if (now - conn.createdAt < LATE_ACCEPT_SCAN_MS) continue;
        let state: ReturnType<typeof tcpPeerAccepted>;
        try {
          state = tcpPeerAccepted(conn.ksock!);
        } catch (err) {
          this.log.debug('cannot look up a rendezvous socket', { cid: String(conn.shadow.cid), error: String(err) });
          continue;
        }
        if (state !== 'accepted') {
          conn.acceptedUnclaimedAt = undefined;
        } else if (conn.acceptedUnclaimedAt === undefined) {
          conn.acceptedUnclaimedAt = now;
        } else if (now - conn.acceptedUnclaimedAt >= LATE_ACCEPT_GRACE_MS) {
          this.counters.fallback('late-accept', conn.programs[1]);
          this.lateFallback(conn, 'a process without the shim accepted it');
          relayed = true;
        }
      }
      if (relayed) this.changed();
    }, LATE_ACCEPT_SCAN_MS);
    this.lateAcceptScan.unref();
  }

  /** Stops the periodic look for late accepts (the agent is stopping). */
  private stopLateAcceptScan(): void {
    if (this.lateAcceptScan) clearInterval(this.lateAcceptScan);
    this.lateAcceptScan = undefined;
  }

  /**
   * The agent is going: it lets go of every shm connection.  Their rings and doorbells live on
   * in the processes that hold them; only the agent's watch ends (a process that dies later is
   * seen by its peer as a hang-up, not as a FIN or a reset chosen by the agent).
   */
  releaseAll(): void {
    this.stopLateAcceptScan();
    for (const conn of [...this.connections.values()]) this.discard(conn);
    this.shm.close();
  }

  private noteFallback(proc: ProcessRecord, req: CtlRequest): void {
    // Only the reasons the ABI defines: a counter per made-up number would grow without end.
    if (!Number.isInteger(req.arg) || req.arg <= ABI.fb.NONE || req.arg >= FALLBACK_REASON_COUNT) {
      return this.violation(proc, req, `FALLBACK with reason ${req.arg}`);
    }
    const count = req.cid > 0n ? Number(req.cid < FALLBACK_NOTE_MAX ? req.cid : FALLBACK_NOTE_MAX) : 1;
    // With a listener's SID: kernel clients a holder of that listener accepted without asking
    // (its page said nothing offloaded waited).
    const sock = req.sid !== 0 ? this.sockets.get(req.sid) : undefined;
    if (sock?.kind === 'listener' && req.arg === ABI.fb.PEER_NOT_OFFLOADED) {
      this.counters.kernelAccepted += count;
      return;
    }
    this.counters.fallback(reasonName(req.arg), proc.program, count);
  }

  private ownedOpenSocket(proc: ProcessRecord, req: CtlRequest): SocketRecord | undefined {
    const sock = this.sockets.get(req.sid);
    if (!sock || sock.client !== proc.client) {
      this.fail(proc.client, req, errno.EBADF, `SID ${req.sid} is not this process's`);
      return undefined;
    }
    if (sock.kind !== 'open') {
      this.fail(proc.client, req, errno.EISCONN, `SID ${req.sid} is already ${sock.kind}`);
      return undefined;
    }
    return sock;
  }

  /** The next SID not in use: after the wrap, a live one is never handed out again. */
  private allocateSid(): number {
    for (;;) {
      const sid = this.nextSid;
      this.nextSid = this.nextSid >= 0xfffffffe ? 1 : this.nextSid + 1;
      if (!this.sockets.has(sid)) return sid; // every live SID has its record, verbs ones too
    }
  }

  /** Lets go of the client's sockets (clientSock, ksock): claimed, or gone. */
  private releaseClientSockets(conn: LiveConnection): void {
    if (conn.ksock !== undefined) this.closeFd(conn.ksock);
    if (conn.clientSock !== undefined) this.closeFd(conn.clientSock);
    conn.ksock = undefined;
    conn.clientSock = undefined;
  }

  /** The kernel's word on the socket a request passed; undefined without one, or not TCP. */
  private identify(fd: number | undefined): TcpSocketIdentity | undefined {
    return this.askKernel(fd, (f) => this.socketOf(f));
  }

  /** Its addresses alone (endpointsOf); undefined without a socket. */
  private endpoints(fd: number | undefined): TcpEndpoints | undefined {
    return this.askKernel(fd, (f) => this.endpointsOf(f));
  }

  private askKernel<T>(fd: number | undefined, read: (fd: number) => T): T | undefined {
    if (fd === undefined) return undefined;
    try {
      return read(fd);
    } catch (err) {
      this.log.debug('the socket passed is not a TCP socket', { error: String(err) });
      return undefined;
    }
  }

  /**
   * The accepted socket and the client's socket (held since its CONNECT) are the two ends of
   * one kernel connection, neither in another network namespace as far as the kernel can say:
   * then, and only then, this process accepted that connection's rendezvous.
   */
  private sameRendezvous(conn: LiveConnection, server: TcpSocketIdentity): boolean {
    const fd = conn.ksock ?? conn.clientSock;
    // A socket's kind and namespace do not change: when CONNECT proved them, only its addresses.
    let client: TcpEndpoints | undefined;
    if (conn.clientInAgentNetns) client = conn.clientEndpoints ?? this.endpoints(fd);
    else {
      const id = this.identify(fd);
      client = id?.inAgentNetns === false ? undefined : id;
    }
    return !!client?.remote && server.remote !== null
      && sameEndpoint(client.local, server.remote) && sameEndpoint(client.remote, server.local);
  }

  /**
   * Without CAP_NET_ADMIN and without the kernel's tcp_diag, the agent cannot tell a socket of
   * its namespace from a twin made in another one: said once, with what to do.
   */
  private warnNetnsBlind(): void {
    if (this.netnsBlindWarned) return;
    this.netnsBlindWarned = true;
    this.log.warn('cannot tell which network namespace an accepted socket is in: load the tcp_diag module '
      + '(modprobe tcp_diag), or a process in a namespace of its own could claim connections');
  }

  /** A claim the request's socket did not prove: counted, logged, and nothing else happens. */
  private refuse(proc: ProcessRecord, why: Refusal, what: string): void {
    this.counters.refused(why);
    // A sweep must not flood the log: the first few lines say who, the counters say how many.
    proc.refusals = (proc.refusals ?? 0) + 1;
    if (proc.refusals <= REFUSALS_LOGGED) this.log.warn(`refused: ${what}`, { pid: proc.pid, program: proc.program, why });
    if (proc.refusals === REFUSALS_LOGGED) {
      this.log.warn('further refusals of this process are counted (vtoe stats), not logged', { pid: proc.pid, program: proc.program });
    }
  }

  /** An ACCEPT refused: the process keeps its socket on kernel TCP; the connection still waits. */
  private refuseAccept(proc: ProcessRecord, req: CtlRequest, why: Refusal, what: string): void {
    this.refuse(proc, why, what);
    this.counters.fallback(reasonName(ABI.fb.UNVERIFIED), proc.program);
    this.reply(proc.client, req, { event: ABI.ev.FALLBACK, reason: ABI.fb.UNVERIFIED });
  }

  /** The connection no longer waits for a claim (claimed, relayed or gone). */
  private unpend(conn: LiveConnection): void {
    if (conn.pendingKey === null) return;
    this.pending.delete(conn.pendingKey);
    this.forgetUnbound(conn);
    conn.pendingKey = null;
    this.waitingChanged(conn.remote.port, -1);
  }

  /** Pending connections to a listener port whose client socket had no port at its CONNECT. */
  private unbound(listenerPort: number): Set<LiveConnection> {
    let set = this.unboundByPort.get(listenerPort);
    if (!set) this.unboundByPort.set(listenerPort, (set = new Set()));
    return set;
  }

  private forgetUnbound(conn: LiveConnection): void {
    const set = this.unboundByPort.get(conn.remote.port);
    if (!set?.delete(conn)) return;
    if (set.size === 0) this.unboundByPort.delete(conn.remote.port);
  }

  /**
   * Keys a pending connection by its client's port once the kernel has picked it (the
   * rendezvous connected): read from the socket the agent holds, never from a note.  Ports
   * another pending connection holds leave it as it is; an ACCEPT then proves which it is.
   */
  private keyByPort(conn: LiveConnection): void {
    if (conn.pendingKey === null || !this.unboundByPort.get(conn.remote.port)?.has(conn)) return;
    const ends = this.endpoints(conn.ksock ?? conn.clientSock);
    if (ends?.remote) conn.clientEndpoints = ends;
    const port = ends?.local.port ?? 0;
    const key = pendingKey(conn.remote.port, port);
    if (port === 0 || this.pending.has(key)) return;
    this.pending.delete(conn.pendingKey);
    this.forgetUnbound(conn);
    this.pending.set((conn.pendingKey = key), conn);
    conn.local = { ...conn.local, port };
  }

  /** An ACCEPT read before its client's ESTABLISH note: key what can be keyed, and look again. */
  private findUnbound(listenerPort: number, clientPort: number): LiveConnection | undefined {
    const set = this.unboundByPort.get(listenerPort);
    if (!set) return undefined;
    for (const conn of [...set]) this.keyByPort(conn);
    return this.pending.get(pendingKey(listenerPort, clientPort));
  }

  /** A connection to `port` starts (+1) or stops (-1) waiting for a claim: the pages say so. */
  waitingChanged(port: number, delta: 1 | -1): void {
    const n = Math.max(0, (this.waitingByPort.get(port) ?? 0) + delta);
    if (n === 0) this.waitingByPort.delete(port);
    else this.waitingByPort.set(port, n);
    for (const listener of this.listeners.onPort(port)) this.pages.get(listener.sid)?.setWaiting(n);
  }

  /** A page for a new listener, or none if it cannot be made (its processes then always ask). */
  private openListenerPage(listener: ListenerEntry): ListenerPagePort | undefined {
    try {
      const page = this.makeListenerPage();
      page.setWaiting(this.waitingByPort.get(listener.port) ?? 0);
      this.pages.set(listener.sid, page);
      return page;
    } catch (err) {
      this.log.debug('no listener page; its processes ask on every accept', { error: String(err) });
      return undefined;
    }
  }

  /** Until when a process may connect to a destination declined now without asking (0: no hold). */
  private kernelHoldUntil(): number {
    return this.config.kernelHoldMs > 0 ? this.now() + this.config.kernelHoldMs : 0;
  }

  private listensOnKernel(to: SockAddr): boolean {
    try {
      return this.kernelListening(to);
    } catch (err) {
      this.log.debug('cannot read the listeners (sock_diag); no hold', { error: String(err) });
      return false;
    }
  }

  private fallback(client: number, req: CtlRequest, reason: number, skipUntil = 0): void {
    this.counters.fallback(reasonName(reason), this.processes.get(client)?.program);
    // The socket is kernel TCP from now on: the agent forgets its SID.
    const sock = this.sockets.get(req.sid);
    if (sock?.kind === 'open' && sock.client === client) {
      this.sockets.delete(req.sid);
      this.processes.get(client)?.sids.delete(req.sid);
    }
    this.reply(client, req, { event: ABI.ev.FALLBACK, reason, skipUntilMs: wireMs(skipUntil) });
  }

  private fail(client: number, req: CtlRequest, err: number, why: string): void {
    this.log.debug('request failed', { op: req.op, err, why });
    this.reply(client, req, { event: ABI.ev.ERROR, err });
  }

  /** A note that breaks the protocol: the sender loses its channel, nobody else notices. */
  private violation(proc: ProcessRecord, req: CtlRequest, why: string): void {
    this.log.warn('protocol violation; closing the channel', { pid: proc.pid, op: req.op, why });
    this.counters.protocolErrors++;
    this.sink.drop(proc.client);
    this.processClosed(proc.client, `protocol: ${why}`);
  }

  private reply(client: number, req: CtlRequest, rep: Omit<CtlReply, 'seq'>, fds?: number[]): boolean {
    this.repliedTo = req;
    this.counters.event(rep.event);
    return this.sink.reply(client, { ...rep, seq: req.seq }, fds);
  }
}

function pendingKey(listenerPort: number, clientPort: number): string {
  return `${listenerPort}:${clientPort}`;
}

/** Until the kernel picks the client's port: unique, and never a port's key. */
function unboundKey(listenerPort: number, cid: bigint): string {
  return `${listenerPort}:unbound:${cid}`;
}



/** A program name as a process gave it, with anything but printable ASCII made '?' (for ss). */
export function printableName(name: string): string {
  return name.replace(/[^\x21-\x7e]/g, '?');
}

/** The same address and port, an IPv4-mapped IPv6 address being its IPv4 one. */
export function sameEndpoint(a: SockAddr, b: SockAddr): boolean {
  return a.port === b.port && canonical(a.address) === canonical(b.address);
}

