// The typed surface of the verbs fabric's addon (native/js_verbs_fabric.cc, built to
// build/Release/vtoe_verbs.node).  It is a separate addon so that the agent loads librdmacm
// and libibverbs only when the verbs fabric is enabled; loading it on a host without them
// throws a VtoeSystemError that says what to install.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { VtoeSystemError } from './errors.js';
import { native, type DirCounters } from './native.js';
import { verbsAddonPath } from './paths.js';
import { assertAsanLoaded } from './sanitize.js';
import { constants as osConstants } from 'node:os';

export type CmEventType =
  | 'ADDRESS_RESOLVED' | 'ADDRESS_ERROR' | 'ROUTE_RESOLVED' | 'ROUTE_ERROR' | 'CONNECT_REQUEST'
  | 'CONNECT_RESPONSE' | 'CONNECT_ERROR' | 'UNREACHABLE' | 'CONNECT_REJECTED' | 'CONNECT_ESTABLISHED'
  | 'DISCONNECTED' | 'DEVICE_REMOVAL' | 'TIMEWAIT_EXIT' | 'ADDRESS_CHANGE' | 'OTHER';

export interface IpPort {
  address: string;
  port: number;
}

/** One rdma_cm event, already acknowledged to librdmacm. */
export interface CmEvent {
  type: CmEventType;
  /** the id it concerns; for CONNECT_REQUEST a new id, owned by the agent from now on */
  handle: number;
  /** CONNECT_REQUEST: the listening id; otherwise 0 */
  listenHandle: number;
  /** rdma_cm's status: 0, a negative errno, or the IB CM reject reason for CONNECT_REJECTED */
  status: number;
  privateData: Buffer;
  local: IpPort | null;
  remote: IpPort | null;
}

export type ConnEventType = 'app_closed' | 'fin_sent' | 'peer_fin' | 'peer_closed' | 'peer_reset' | 'qp_error' | 'protocol'
  | 'authenticated' | 'timed_out'
  /** the QP failed as a link fails it: the data path waits, suspended, for a resume or a give-up */
  | 'link_lost'
  /** (active end) the server's process took the passive end: the rendezvous socket may go */
  | 'claimed'
  /** (active end) the server took the connection on kernel TCP: relay() the stream */
  | 'kernel_accepted';

/** Adaptive polling: connections polled now, windows opened, windows that caught traffic. */
export interface SpinStats {
  polled: number;
  windows: number;
  caught: number;
}

/** Send staging: bytes the connections' send buffers pin now, at most, and how often one
 * could not grow when it had to (the budget spent, or registration failed). */
export interface StagingStats {
  bytes: number;
  peak: number;
  refused: number;
}

/** The proof the active end sends first, or the one the passive end waits for (16 bytes). */
export type WireAuth = { send: Buffer } | { expect: Buffer };

/** Where one end's receive stream stands (a resume REQ or REP carries the peer's). */
export interface ResumePoint {
  delivered: bigint;
  consumed: bigint;
  haveFin: boolean;
  haveClose: boolean;
}

/** Something the data path of one connection could not settle itself. */
export interface ConnEvent {
  type: ConnEventType;
  handle: number;
  /** app_closed: 'fin' or 'reset' (what went to the peer); errors: what failed */
  detail: string;
}

/** What the peer may write into: from our REQ or REP private data. */
export interface PeerWindow {
  ringAddr: bigint;
  ringRkey: number;
  mailboxAddr: bigint;
  mailboxRkey: number;
  recvCredits: number;
}

export interface LocalWindow extends PeerWindow {
  qpNum: number;
}

/** The region's counters, as for the shm fabric, plus the data path's own. */
export interface VerbsConnCounters {
  rings: [DirCounters, DirCounters];
  appSide: 0 | 1;
  messagesSent: number;
  messagesReceived: number;
  creditMessages: number;
  creditStalls: number;
  /** zero-length writes sent to see whether a silent peer is still there */
  probes: number;
  notifications: number;
  bytesSent: number;
  bytesDelivered: number;
  /** bytes copied into the agent's send buffer while the peer's ring was full */
  bytesStaged: number;
  dataPath: VerbsDataPath;
}

/** Where one end's data path stands (`vtoe ss --json`): which side a stalled stream waits for. */
export interface VerbsDataPath {
  /** stream positions in the process's tx ring: posted, completed by our HCA, freed to it */
  sent: number;
  completed: number;
  txTail: number;
  messagesSent: number;
  /** age of the oldest send not yet completed; 0: none out */
  oldestUnackedMs: number;
  sendQueueUsed: number;
  batchesOut: number;
  /** what the peer last told us: bytes it consumed, receives it posted */
  peerConsumed: number;
  peerRecvs: number;
  /** the rx ring: bytes delivered, and what we last told the peer */
  delivered: number;
  reportedConsumed: number;
  recvsPosted: number;
  reportedRecvs: number;
  /** the agent's send buffer: the stream below stagedEnd left the tx ring; its chunks' bytes */
  stagedEnd: number;
  stagedPinned: number;
  portUp: boolean;
  notifyRequested: boolean;
  sendCqArmed: boolean;
  authPending: boolean;
  finSent: boolean;
  resetSent: boolean;
  failed: boolean;
}

/** One connection's data path, as src/agent/liveness.ts judges a peer that fell silent. */
export interface LivenessSample {
  /** age of the oldest send the peer's HCA has not acknowledged; 0: none */
  unackedMs: number;
  /** since the peer last showed life: an acknowledgement or a message */
  quietMs: number;
  /** a probe is among the unacknowledged sends */
  probePending: boolean;
  /** TCP's zero window: the peer's ring is full of our bytes, or credits hold the process's back */
  waitingForPeer: boolean;
  /** the process's TCP_USER_TIMEOUT; 0: unset */
  userTimeoutMs: number;
  /** TCP_KEEPIDLE when SO_KEEPALIVE is on; 0: keepalive off */
  keepIdleS: number;
  keepIntvlS: number;
  keepCnt: number;
}

export type QpTarget = 'INIT' | 'RTR' | 'RTS' | 'ERR' | 'RESET';

export interface VerbsFabricHandlers {
  onCmEvent(event: CmEvent): void;
  onConnEvent(event: ConnEvent): void;
}

interface NativeVerbsFabric {
  listen(address: IpPort, backlog: number): number;
  resolve(destination: IpPort, timeoutMs: number): number;
  resolveRoute(handle: number, timeoutMs: number): void;
  createQp(handle: number, ringSize: number, cid: bigint, appSide: 0 | 1): LocalWindow;
  modifyQp(handle: number, state: QpTarget): void;
  connect(handle: number, privateData: Buffer): void;
  accept(handle: number, privateData: Buffer): void;
  reject(handle: number, privateData: Buffer): void;
  establish(handle: number): void;
  start(handle: number, peer: PeerWindow, auth?: WireAuth): void;
  suspend(handle: number): void;
  adopt(to: number, from: number): void;
  position(handle: number): ResumePoint;
  resume(handle: number, peer: ResumePoint, auth?: WireAuth): void;
  disconnect(handle: number): void;
  /** the id's local port is active now (asked of the device) */
  portActive(handle: number): boolean;
  resetApp(handle: number): void;
  answerWriteAfterClose(handle: number): void;
  sendAccepted(handle: number, kernel: boolean): void;
  relay(handle: number, fd: number): void;
  setSpin(us: number): void;
  spinStats(): SpinStats;
  setStaging(perConnection: number, allowance: number): void;
  stagingStats(): StagingStats;
  liveness(handle: number): LivenessSample;
  probe(handle: number): boolean;
  timeOut(handle: number): void;
  fdsForApp(handle: number): number[];
  releaseApp(handle: number): void;
  counters(handle: number): VerbsConnCounters;
  destroy(handle: number): void;
  close(): void;
  readonly handlerErrors: number;
  readonly lastHandlerError: unknown;
}

interface VerbsAddon {
  VerbsFabric: new (handlers: VerbsFabricHandlers) => NativeVerbsFabric;
}

let addon: VerbsAddon | undefined;

function loadVerbsAddon(): VerbsAddon {
  if (addon) return addon;
  if (!existsSync(verbsAddonPath)) {
    throw new VtoeSystemError(osConstants.errno.ENOENT,
      `the verbs addon ${verbsAddonPath} is missing: install libibverbs-dev and librdmacm-dev, then run 'npm rebuild'`);
  }
  assertAsanLoaded(verbsAddonPath);
  addon = native(() => createRequire(import.meta.url)(verbsAddonPath) as VerbsAddon);
  return addon;
}

/**
 * The rdma_cm event channel, the ids and the QPs of the verbs fabric.  Every method is
 * synchronous and non-blocking; its outcome arrives as an event.  Methods throw
 * VtoeSystemError with the errno name as code.
 */
export class VerbsFabric {
  private readonly raw: NativeVerbsFabric;

  /** Throws VtoeSystemError ENODEV when rdma_cm has no device, ENOSYS when built without rdma-core. */
  constructor(handlers: VerbsFabricHandlers) {
    const { VerbsFabric: Native } = loadVerbsAddon();
    this.raw = native(() => new Native(handlers));
  }

  listen(address: IpPort, backlog: number): number { return native(() => this.raw.listen(address, backlog)); }
  resolve(destination: IpPort, timeoutMs: number): number { return native(() => this.raw.resolve(destination, timeoutMs)); }
  resolveRoute(handle: number, timeoutMs: number): void { native(() => this.raw.resolveRoute(handle, timeoutMs)); }
  createQp(handle: number, ringSize: number, cid: bigint, appSide: 0 | 1): LocalWindow {
    return native(() => this.raw.createQp(handle, ringSize, cid, appSide));
  }
  modifyQp(handle: number, state: QpTarget): void { native(() => this.raw.modifyQp(handle, state)); }
  connect(handle: number, privateData: Buffer): void { native(() => this.raw.connect(handle, privateData)); }
  accept(handle: number, privateData: Buffer): void { native(() => this.raw.accept(handle, privateData)); }
  reject(handle: number, privateData: Buffer): void { native(() => this.raw.reject(handle, privateData)); }
  establish(handle: number): void { native(() => this.raw.establish(handle)); }
  start(handle: number, peer: PeerWindow, auth?: WireAuth): void { native(() => this.raw.start(handle, peer, auth)); }
  /** Resuming on a new QP: stop the data path and move the QP to ERR; the process is not told. */
  suspend(handle: number): void { native(() => this.raw.suspend(handle)); }
  /** Move the connection of `from` to the id `to` (same device), with a fresh QP in RESET. */
  adopt(to: number, from: number): void { native(() => this.raw.adopt(to, from)); }
  /** Where our receive stream stands, for the resume REQ or REP. */
  position(handle: number): ResumePoint { return native(() => this.raw.position(handle)); }
  /** The new QP is in RTS: send again from what the peer has, and go on. */
  resume(handle: number, peer: ResumePoint, auth?: WireAuth): void { native(() => this.raw.resume(handle, peer, auth)); }
  disconnect(handle: number): void { native(() => this.raw.disconnect(handle)); }
  portActive(handle: number): boolean { return native(() => this.raw.portActive(handle)); }
  /** The connection is lost: the process sees ECONNRESET on its next call. */
  resetApp(handle: number): void { native(() => this.raw.resetApp(handle)); }
  /** The process wrote after its peer closed: its fd hangs up as after TCP's answering reset
   * (POLLHUP|POLLERR), and it reports EPIPE, not ECONNRESET. */
  answerWriteAfterClose(handle: number): void { native(() => this.raw.answerWriteAfterClose(handle)); }
  /** Passive end: tells the peer a process claimed it, or (kernel) took it on kernel TCP. */
  sendAccepted(handle: number, kernel: boolean): void { native(() => this.raw.sendAccepted(handle, kernel)); }
  /** Active end: the stream goes on over the client's kernel socket fd (owned from now on,
   * closed on failure too); the QP goes now, the id stays for the DREQ. */
  relay(handle: number, fd: number): void { native(() => this.raw.relay(handle, fd)); }
  /** Adaptive polling: after traffic, poll the busy connections for up to `us` microseconds
   * without anything moving before sleeping in epoll again; 0 never polls. */
  setSpin(us: number): void { native(() => this.raw.setSpin(us)); }
  spinStats(): SpinStats { return native(() => this.raw.spinStats()); }
  /** Send staging: bytes one connection may buffer in the agent, and all of them together. */
  setStaging(perConnection: number, allowance: number): void { native(() => this.raw.setStaging(perConnection, allowance)); }
  stagingStats(): StagingStats { return native(() => this.raw.stagingStats()); }
  /** What the data path knows of the peer's last signs of life, and the process's settings. */
  liveness(handle: number): LivenessSample { return native(() => this.raw.liveness(handle)); }
  /** An empty message the peer's HCA must acknowledge; false if one is out or none can go. */
  probe(handle: number): boolean { return native(() => this.raw.probe(handle)); }
  /** The peer fell silent for too long: the process sees ETIMEDOUT; a timed_out event follows. */
  timeOut(handle: number): void { native(() => this.raw.timeOut(handle)); }
  fdsForApp(handle: number): number[] { return native(() => this.raw.fdsForApp(handle)); }
  releaseApp(handle: number): void { native(() => this.raw.releaseApp(handle)); }
  counters(handle: number): VerbsConnCounters { return native(() => this.raw.counters(handle)); }
  destroy(handle: number): void { this.raw.destroy(handle); }
  close(): void { this.raw.close(); }
  get handlerErrors(): number { return this.raw.handlerErrors; }
  get lastHandlerError(): unknown { return this.raw.lastHandlerError; }
}
