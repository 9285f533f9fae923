// The typed surface of the native addon (native/, built to build/Release/vtoe_native.node).
// Errors from the addon carry .code and .errno; here they become VtoeSystemError.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { VtoeSystemError } from './errors.js';
import { addonPath } from './paths.js';
import { assertAsanLoaded } from './sanitize.js';

/** struct vtoe_sockaddr, decoded. */
export interface SockAddr {
  family: 4 | 6;
  /** inet_ntop text, e.g. '127.0.0.1' or 'fe80::1' */
  address: string;
  port: number;
  scopeId: number;
}

/** struct vtoe_ctl_req, after the addon checked it. */
export interface CtlRequest {
  op: number;
  seq: number;
  sid: number;
  cid: bigint;
  arg: number;
  local: SockAddr | null;
  remote: SockAddr | null;
  /** HELLO: the program name; otherwise '' */
  name: string;
  /**
   * The socket passed with the request: LISTEN's listening socket, CONNECT's bound socket (the
   * client's kernel rendezvous), ACCEPT's accepted one, ATTACH's and BELL's offloaded socket.
   * The handler owns it and must close it (or keep it, or hand it to ShmConnection.relay).
   */
  fd?: number;
}

/** struct vtoe_ctl_rep; magic, abi and nfds are filled in by the addon, the rest defaults to 0. */
export interface CtlReply {
  event: number;
  seq: number;
  err?: number;
  sid?: number;
  fabric?: number;
  cid?: bigint;
  side?: 0 | 1;
  ringSize?: number;
  reason?: number;
  spinUs?: number;
  /** Until then (low 32 bits of CLOCK_MONOTONIC in ms) the shim need not ask: vtoe_abi.h. */
  skipUntilMs?: number;
}

/** SO_PEERCRED of a control client. */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * Called on the event loop thread.  Handlers may call reply/drop/close re-entrantly.  A handler
 * that throws does not stop the server: see ControlServer.lastHandlerError.
 */
export interface ControlHandlers {
  onOpen(client: number, cred: PeerCredentials): void;
  onMessage(client: number, req: CtlRequest): void;
  /**
   * Once per opened client (not when the whole server is close()d).  reason: 'closed',
   * 'stalled' (it did not read its replies), 'dropped' (drop() was called),
   * 'protocol: <what was wrong>', or 'error: <ERRNO>'.
   */
  onClose(client: number, reason: string): void;
}

/** The indices and flags of one ring; ring d is produced by side d. */
export interface DirCounters {
  head: number;
  tail: number;
  /** doorbells the producer rang: fewer than its sends when the reader was busy */
  wakes: number;
  /** times the producer moved to the ring's large area for a reader that lagged */
  grows: number;
  fin: boolean;
  reset: boolean;
  rdShut: boolean;
  txWaiting: boolean;
}

export interface RingCounters {
  rings: [DirCounters, DirCounters];
  /** cm_state[side] as last set with setCmState */
  cmState: [number, number];
}

export type Side = 0 | 1;

interface NativeControlServer {
  reply(client: number, rep: CtlReply, fds?: number[]): boolean;
  drop(client: number): void;
  close(): void;
  readonly clientCount: number;
  readonly protocolErrors: number;
  readonly handlerErrors: number;
  readonly lastHandlerError: unknown;
  readonly shedConnections: number;
  readonly closed: boolean;
  readonly path: string;
}

/** What a side's last close amounted to, as TCP would have put it on the wire. */
export type SideEnd = 'fin' | 'reset';

interface NativeShmConnection {
  fdsFor(side: Side): number[];
  releaseSide(side: Side): void;
  sideOfSocket(fd: number): number;
  regionFd(): number;
  peerBellFd(side: Side): number;
  bellOp(side: Side, op: number): void;
  watchEnds(handlers: { onEnd(side: Side, how: SideEnd): void }): void;
  hangUp(side: Side): void;
  relay(fd: number, handlers: { onRelayEnd(how: SideEnd): void }): void;
  counters(): RingCounters;
  setCmState(side: Side, code: number): void;
  close(): void;
  readonly mappedBytes: number;
  readonly residentBytes: number;
  readonly ringSize: number;
  readonly closed: boolean;
}

interface NativeShmRegionPool {
  close(): void;
  readonly ready: number;
  readonly taken: number;
  readonly failures: number;
}

interface NativeListenerPage {
  setWaiting(n: number): void;
  close(): void;
  readonly fd: number;
}

interface NativeAddon {
  ControlServer: new (path: string, handlers: ControlHandlers) => NativeControlServer;
  ListenerPage: new () => NativeListenerPage;
  ShmConnection: new (ringSize: number, cid: bigint, ringLarge?: number, pool?: NativeShmRegionPool,
    ringAuto?: number, buffers?: number[]) => NativeShmConnection;
  ShmRegionPool: new (ringSize: number, ringLarge: number, depth: number) => NativeShmRegionPool;
  abiConstants(): Record<string, number>;
  probeVerbs(): VerbsProbe;
  tcpPeerAccepted(fd: number): number;
  tcpSocketIdentity(fd: number): TcpSocketIdentity;
  tcpEndpoints(fd: number): TcpEndpoints;
  tcpBufferSizes(fd: number): TcpBufferSizes;
  tcpBindAnyPort(fd: number): SockAddr;
  tcpListening(family: 4 | 6, address: string, port: number): boolean;
  notifyService(message: string): boolean;
}

let addon: NativeAddon | undefined;

/** Loads the addon on first use, so that importing this module's types never needs it. */
export function loadAddon(): NativeAddon {
  if (addon) return addon;
  if (!existsSync(addonPath)) {
    throw new Error(`the vtoe native addon ${addonPath} is missing: run 'npm install' (or 'npx node-gyp rebuild')`);
  }
  assertAsanLoaded(addonPath);
  addon = createRequire(import.meta.url)(addonPath) as NativeAddon;
  return addon;
}

// Errors from a failed system call become VtoeSystemError; TypeError/RangeError pass through.
export function native<T>(body: () => T): T {
  try {
    return body();
  } catch (error) {
    const e = error as { errno?: unknown; code?: unknown; message?: unknown };
    if (error instanceof Error && typeof e.errno === 'number' && typeof e.code === 'string') {
      throw new VtoeSystemError(e.errno, error.message, { cause: error });
    }
    throw error;
  }
}

/**
 * Has a process accepted the other end of the connected TCP socket fd?  'accepted', 'queued'
 * (still in its listener's accept queue) or 'gone'.  One sock_diag lookup by four-tuple.
 */
export function tcpPeerAccepted(fd: number): 'accepted' | 'queued' | 'gone' {
  const r = native(() => loadAddon().tcpPeerAccepted(fd));
  return r > 0 ? 'accepted' : r === 0 ? 'queued' : 'gone';
}

/** What the kernel says a TCP socket is (tcpSocketIdentity). */
export interface TcpSocketIdentity {
  local: SockAddr;
  /** null until it is connected */
  remote: SockAddr | null;
  listening: boolean;
  /**
   * Whether the socket lives in the agent's network namespace (in another one a process can
   * make any four-tuple).  null when the kernel cannot say: without CAP_NET_ADMIN (SIOCGSKNS),
   * for a socket not yet connected, or without the tcp_diag module (sock_diag).
   */
  inAgentNetns: boolean | null;
}

/**
 * The addresses of TCP socket fd and whether it lives in the agent's network namespace.
 * Throws VtoeSystemError (EPROTOTYPE: not a TCP socket).  Reads, getsockname/getpeername and
 * one sock_diag lookup.
 */
export function tcpSocketIdentity(fd: number): TcpSocketIdentity {
  return native(() => loadAddon().tcpSocketIdentity(fd));
}

/** The two addresses of a socket (tcpEndpoints). */
export type TcpEndpoints = Pick<TcpSocketIdentity, 'local' | 'remote'>;

/**
 * The addresses of socket fd, without tcpSocketIdentity's checks of its kind and namespace:
 * for a socket those were read from before (they do not change).  getsockname and getpeername.
 */
export function tcpEndpoints(fd: number): TcpEndpoints {
  return native(() => loadAddon().tcpEndpoints(fd));
}

/** SO_SNDBUF and SO_RCVBUF of a socket as the kernel keeps them (twice what a program set). */
export interface TcpBufferSizes {
  sndbuf: number;
  rcvbuf: number;
}

/** A socket's buffer sizes (TcpBufferSizes).  Two getsockopt calls. */
export function tcpBufferSizes(fd: number): TcpBufferSizes {
  return native(() => loadAddon().tcpBufferSizes(fd));
}

/**
 * Binds unbound TCP socket fd to a port the kernel picks, at the address it has, and returns
 * its local endpoint.  Throws VtoeSystemError (EISCONN if connected, EINVAL if bound already,
 * EADDRINUSE when no port is free).
 */
export function tcpBindAnyPort(fd: number): SockAddr {
  return native(() => loadAddon().tcpBindAnyPort(fd));
}

/**
 * Whether a TCP socket of the agent's network namespace listens where a connect to `to` would
 * land (an exact or wildcard address; an IPv6 wildcard counts for IPv4).  Reads the listeners
 * with sock_diag.
 */
export function tcpListening(to: SockAddr): boolean {
  return native(() => loadAddon().tcpListening(to.family, to.address, to.port));
}

/**
 * Tells the service manager (systemd's $NOTIFY_SOCKET, e.g. 'READY=1', 'STOPPING=1', 'STATUS=…')
 * how the agent is doing; false when no manager asked.  Throws VtoeSystemError if it cannot send.
 */
export function notifyService(message: string): boolean {
  return native(() => loadAddon().notifyService(message));
}

/** The header's constants under their C names, with the values compiled into the addon. */
export function abiConstants(): Record<string, number> {
  return loadAddon().abiConstants();
}

/** One non-zero GID table entry. */
export interface VerbsGid {
  index: number;
  /** inet_ntop(AF_INET6) text, e.g. 'fe80::...' or '::ffff:192.0.2.1' */
  gid: string;
}

export interface VerbsPort {
  /** 1-based port number */
  port: number;
  /** 'ACTIVE', 'DOWN', 'INIT', 'ARMED', 'ACTIVE_DEFER', 'NOP', or 'UNKNOWN…' */
  state: string;
  /** 'InfiniBand', 'Ethernet', 'Unspecified', or 'UNKNOWN…' */
  linkLayer: string;
  /** bytes; 0 if unknown */
  activeMtu: number;
  /** the errno name if ibv_query_port failed (state and linkLayer are then 'UNKNOWN') */
  error?: string;
  gids: VerbsGid[];
}

export interface VerbsDevice {
  name: string;
  /** node GUID, 16 hex digits */
  guid: string;
  /** 'InfiniBand' (also RoCE/Soft-RoCE), 'iWARP', 'usNIC', … */
  transport?: string;
  canOpen: boolean;
  /** errno name of the failed ibv_open_device, e.g. 'EACCES' */
  openError?: string;
  canAllocPd: boolean;
  /** errno name of the failed ibv_alloc_pd (only when the device opened) */
  allocPdError?: string;
  ports: VerbsPort[];
}

export interface VerbsProbe {
  library: { loaded: boolean; error?: string };
  devices: VerbsDevice[];
}

/**
 * The host's RDMA devices, through libibverbs.so.1 loaded with dlopen at call time (the addon
 * does not link it, so it loads without rdma-core; a missing library is reported in
 * `library`, not thrown).  Synchronous: it opens each device and may block briefly in the
 * kernel, so only the CLI (`vtoe doctor`) calls it, never the agent's event loop.
 * Throws VtoeSystemError only if ibv_get_device_list fails for an unexpected reason.
 */
export function probeVerbs(): VerbsProbe {
  return native(() => loadAddon().probeVerbs());
}

/** The agent's control socket: AF_UNIX SOCK_SEQPACKET, one client per process. */
export class ControlServer {
  readonly #native: NativeControlServer;

  /** Throws VtoeSystemError: EADDRINUSE when an agent already answers at `path`. */
  constructor(path: string, handlers: ControlHandlers) {
    const { ControlServer: Native } = loadAddon();
    this.#native = native(() => new Native(path, handlers));
  }

  /**
   * Sends one reply, with 0 or exactly 3 descriptors (enum vtoe_rep_fd order).  False when the
   * client is unknown or could not take it (it is then dropped: onClose 'stalled'/'closed').
   */
  reply(client: number, rep: CtlReply, fds?: number[]): boolean {
    return native(() => this.#native.reply(client, rep, fds));
  }

  /** Closes one client; onClose(client, 'dropped') runs before this returns. */
  drop(client: number): void {
    native(() => this.#native.drop(client));
  }

  /** Stops listening, closes all clients (no onClose) and unlinks the socket.  Idempotent. */
  close(): void {
    native(() => this.#native.close());
  }

  get path(): string {
    return this.#native.path;
  }
  get closed(): boolean {
    return this.#native.closed;
  }
  get clientCount(): number {
    return this.#native.clientCount;
  }
  /** Clients dropped for malformed messages. */
  get protocolErrors(): number {
    return this.#native.protocolErrors;
  }
  /** Connections accepted and closed at once because the agent was out of descriptors. */
  get shedConnections(): number {
    return this.#native.shedConnections;
  }
  /** How many times a handler threw; the server kept serving each time. */
  get handlerErrors(): number {
    return this.#native.handlerErrors;
  }
  /** What the last throwing handler threw, or undefined. */
  get lastHandlerError(): unknown {
    return this.#native.lastHandlerError;
  }
}

/**
 * The page that tells a listener's processes how many offloaded connections to its port wait
 * for a claim (struct vtoe_listener_page): handed out with a LISTEN's ACK, written only here.
 */
export class ListenerPage {
  readonly #native: NativeListenerPage;

  /** Throws VtoeSystemError when the memfd cannot be made (e.g. EMFILE). */
  constructor() {
    const { ListenerPage: Native } = loadAddon();
    this.#native = native(() => new Native());
  }

  /** The memfd to send with the ACK (-1 once closed). */
  get fd(): number {
    return this.#native.fd;
  }

  setWaiting(n: number): void {
    native(() => this.#native.setWaiting(n));
  }

  close(): void {
    this.#native.close();
  }
}

/**
 * Connection regions made ahead of time by a thread of the addon, so that a CONNECT's reply
 * does not wait for a dozen system calls on the event loop.  It keeps `depth` made (each holds
 * a memfd and four socket descriptors) and sleeps while full.
 */
export class ShmRegionPool {
  readonly #native: NativeShmRegionPool;

  constructor(readonly ringSize: number, readonly ringLarge: number, depth: number) {
    const { ShmRegionPool: Native } = loadAddon();
    this.#native = native(() => new Native(ringSize, ringLarge, depth));
  }

  /** @internal for ShmConnection */
  get handle(): NativeShmRegionPool {
    return this.#native;
  }

  /** Made and waiting. */
  get ready(): number {
    return this.#native.ready;
  }

  /** Connections that got a region made ahead. */
  get taken(): number {
    return this.#native.taken;
  }

  /** Times the thread could not make one (descriptors or memory short); it waits for a take. */
  get failures(): number {
    return this.#native.failures;
  }

  /** Stops the thread and closes what it made.  Idempotent. */
  close(): void {
    this.#native.close();
  }
}

/** The region and doorbells of one shm-fabric connection. */
/**
 * How far a connection's large areas fill (vtoe_abi.h, vtoe_large_fill()): `auto` for ends that
 * set no buffers, and the buffers each side's socket set before the connection existed
 * ([active, passive]; as the program set them, half what the kernel keeps; 0: not set).
 */
export interface RingFill {
  auto: number;
  set?: readonly [{ sndbuf: number; rcvbuf: number }, { sndbuf: number; rcvbuf: number }];
}

export class ShmConnection {
  readonly #native: NativeShmConnection;

  /**
   * ringSize: each ring's small area; ringLarge: the large area a ring moves to when its
   * reader lags (0: none).  Throws VtoeSystemError EINVAL unless ringSize is a power of two in
   * 4 KiB..64 MiB and ringLarge is 0 or a larger power of two within the same bound, or a
   * fill above ringLarge.  With a pool of the same sizes, a region it made is taken if one is
   * ready.  fill: how far the large areas fill (vtoe_large_fill(); default none).
   */
  constructor(ringSize: number, cid: bigint, ringLarge = 0, pool?: ShmRegionPool, fill?: RingFill) {
    const { ShmConnection: Native } = loadAddon();
    const set = fill?.set;
    this.#native = native(() => new Native(ringSize, cid, ringLarge, pool?.handle, fill?.auto ?? 0,
      set && [set[0].sndbuf, set[0].rcvbuf, set[1].sndbuf, set[1].rcvbuf]));
  }

  /** [memfd, app fd of `side`, bell of the other side]: what a reply for `side` carries. */
  fdsFor(side: Side): number[] {
    return native(() => this.#native.fdsFor(side));
  }

  /** Closes the agent's copy of `side`'s socket once it was sent.  Idempotent. */
  releaseSide(side: Side): void {
    native(() => this.#native.releaseSide(side));
  }

  /** The side whose socket `fd` is (in whichever process it was received), or -1. */
  sideOfSocket(fd: number): Side | -1 {
    return native(() => this.#native.sideOfSocket(fd)) as Side | -1;
  }

  /** The region's memfd (the agent's own, for a reply to carry; not to be closed). */
  regionFd(): number {
    return native(() => this.#native.regionFd());
  }

  /** The agent's copy of the doorbell of `side`'s peer (for a reply to carry; not to be closed). */
  peerBellFd(side: Side): number {
    return native(() => this.#native.peerBellFd(side));
  }

  /**
   * For `side`, which holds no doorbell of its own (VTOE_PEER_BELLS=0, or it ran short of
   * descriptors): ring, drain or shut its peer's doorbell (ABI.bell) with the agent's copy.
   */
  bellOp(side: Side, op: number): void {
    native(() => this.#native.bellOp(side, op));
  }

  /**
   * From now on, when a side's socket is closed in every process (or they all died), the
   * connection ends as TCP would: a FIN after its data, or a reset if it was reset or left
   * data unread; then onEnd says which.  No exit of one process hangs up its peer otherwise.
   */
  watchEnds(onEnd: (side: Side, how: SideEnd) => void): void {
    native(() => this.#native.watchEnds({ onEnd }));
  }

  /**
   * `side`'s peer is gone and `side` wrote to it: its fd hangs up (with POLLERR if its reset
   * fuse is queued), as after the reset a TCP peer answers such a write with.
   */
  hangUp(side: Side): void {
    native(() => this.#native.hangUp(side));
  }

  /**
   * The server took this connection on kernel TCP: the agent plays its passive side from now
   * on, carrying the stream between the rings and `fd` (the client's kernel rendezvous
   * socket, owned by the connection from now on).  onEnd: both directions ended, or a reset.
   */
  relay(fd: number, onEnd: (how: SideEnd) => void): void {
    native(() => this.#native.relay(fd, { onRelayEnd: onEnd }));
  }

  counters(): RingCounters {
    return native(() => this.#native.counters());
  }

  setCmState(side: Side, code: number): void {
    native(() => this.#native.setCmState(side, code));
  }

  /** Closes every descriptor and unmaps the region.  Idempotent. */
  close(): void {
    native(() => this.#native.close());
  }

  get mappedBytes(): number {
    return this.#native.mappedBytes;
  }

  /** Bytes of the region in use: the sparse large areas count only the pages written. */
  get residentBytes(): number {
    return this.#native.residentBytes;
  }
  get ringSize(): number {
    return this.#native.ringSize;
  }
  get closed(): boolean {
    return this.#native.closed;
  }
}
