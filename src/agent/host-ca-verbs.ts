// The host connection agent of the verbs fabric (VNET_Host_CA over InfiniBand): one RC queue
// pair per shadow connection, connected through rdma_cm and driven step by step here, so the
// IB CM and QP machines of docs/design.md section 4 are the ones that run.
//
// Active:  resolve address, route → create QP, INIT → REQ → (REP) RTR, RTS → RTU → data.
// Passive: (REQ) → create QP, INIT, RTR → REP → (RTU, or the process's ACCEPT) RTS → data.
// Trust:   the REP carries the passive agent's proof of the cluster key, the active agent's
//          first message its own (cluster-key.ts); a passive end is claimable only once proven.
// Close:   FINs travel in band; the end that sent its FIN first sends DREQ once it has the
//          peer's; both QPs go to ERR; TIMEWAIT; the id and QP are destroyed.
// Resume:  a QP that fails as a link fails it, or stops sending, is replaced by a new one and
//          the streams go on from what each side has (verbs-resume.ts).
// Any reset, other QP error or DREQ without a FIN reaches the process as ECONNRESET.
import { ABI } from '../abi.js';
import type { ResolvedConfig } from '../config.js';
import { VtoeSystemError } from '../errors.js';
import type { Logger } from '../log.js';
import type { SockAddr } from '../native.js';
import { VerbsFabric, type CmEvent, type ConnEvent, type SpinStats, type VerbsConnCounters } from '../native-verbs.js';
import { loadClusterAuth, macEqual, newNonce, repMac, rtuMac, type ClusterAuth } from './cluster-key.js';
import type { EventLog } from './event-log.js';
import type { ListenerEntry } from './listener-registry.js';
import { canonical, isLocalAddress, isWildcard } from './local-addresses.js';
import { findRdmaAddress } from './rdma-addresses.js';
import type { AgentCounters } from './stats.js';
import { VerbsEndpoint } from './verbs-endpoint.js';
import { kernelHasTcpPorts, kernelTcpInodes } from './kernel-tcp.js';
import { judgeLiveness, unackedLimitMs } from './liveness.js';
import { VerbsResumer } from './verbs-resume.js';
import { PinnedBudget, pinnedBytesPerEnd, pinnedLimit, type PinnedSnapshot } from './pinned-budget.js';
import { monotonicMs } from './short-connections.js';
import { SilentHosts } from './silent-hosts.js';
import { readHostMemory } from '../host-memory.js';
import { closeFd } from './close-fd.js';
import { availableParallelism } from 'node:os';
import {
  decodeRej, decodeRep, decodeReq, decodeResumeReq, encodeRej, encodeRep, encodeReq, REP_MAC_AT, REQ_PRIVATE_DATA_MAX,
  type ReqData, type ResumeReqData,
} from './verbs-wire.js';

const RESOLVE_TIMEOUT_MS = 2000;
/** The shim waits agentTimeoutMs for the reply: a REQ is given up well before, with a fallback. */
function connectDeadlineMs(config: ResolvedConfig): number {
  return Math.max(100, Math.floor(config.agentTimeoutMs * 0.8));
}
/** How often running connections' peers are judged (src/agent/liveness.ts): a timeout's grain. */
const LIVENESS_CHECK_MS = 500;
/** While proven passive ends wait for a claim, the kernel is asked this often whether a
 * process took one on kernel TCP instead (late fallback); younger ends are not looked at. */
const LATE_ACCEPT_SCAN_MS = 50;
/** Accepted on kernel TCP and unclaimed this long: the process that accepted it has no shim. */
const LATE_ACCEPT_GRACE_MS = 200;

/** The VTOE event (enum vtoe_event) of each rdma_cm event (docs/design.md section 4). */
const CM_EVENT_CODES: Partial<Record<CmEvent['type'], number>> = {
  ADDRESS_RESOLVED: ABI.ev.ADDRESS_RESOLVED,
  ADDRESS_ERROR: ABI.ev.ADDRESS_ERROR,
  ROUTE_RESOLVED: ABI.ev.ROUTE_RESOLVED,
  ROUTE_ERROR: ABI.ev.ROUTE_ERROR,
  CONNECT_REQUEST: ABI.ev.CONNECT_REQUEST,
  CONNECT_RESPONSE: ABI.ev.CONNECT_RESPONSE,
  CONNECT_ERROR: ABI.ev.CONNECT_ERROR,
  UNREACHABLE: ABI.ev.UNREACHABLE,
  CONNECT_REJECTED: ABI.ev.CONNECT_REJECTED,
  CONNECT_ESTABLISHED: ABI.ev.CONNECT_ESTABLISHED,
  DISCONNECTED: ABI.ev.DISCONNECTED,
  DEVICE_REMOVAL: ABI.ev.DEVICE_REMOVAL,
};

/** What the verbs host CA needs from the core CA. */
export interface VerbsHostContext {
  findListener(family: 4 | 6, address: string, port: number): ListenerEntry | undefined;
  allocateCid(): bigint;
  hasCapacity(): boolean;
  /** One more (+1) or one fewer (-1) passive end waits for a claim on a listener port. */
  waitingChanged(port: number, delta: 1 | -1): void;
  changed(): void;
  /** The device went: the agent watches for one to come (reopen). */
  fabricLost(): void;
}

export interface ActiveRequest {
  sid: number;
  local: SockAddr;
  remote: SockAddr;
  pid: number;
  program: string;
}

export type ConnectOutcome =
  | { kind: 'connected'; end: VerbsEndpoint; fds: number[]; ringSize: number }
  | { kind: 'fallback'; reason: number; why: string };

interface Connecting {
  end: VerbsEndpoint;
  request: ActiveRequest;
  done: (outcome: ConnectOutcome) => void;
  timer: NodeJS.Timeout;
  req?: Buffer; // as sent: both proofs cover it
  /** The other host's address, for the silent-host rule; null for this host. */
  remoteHost: string | null;
}

interface PassiveInfo {
  peer: ReqData;
  listenerSid: number;
  key: string;
  fromThisHost: boolean;
  program: string; // the listener's, for per-program statistics
  expect: Buffer; // the active agent's proof, which its first message must carry
  authenticated: boolean;
  since: number; // Date.now() at the REQ
  /** Counted among the connections waiting on its listener's port (listener page). */
  waiting: boolean;
  /** When the kernel first showed its server end accepted by a process, with no claim yet. */
  acceptedUnclaimedAt?: number;
}

export type PassiveClaim = { end: VerbsEndpoint; fds: number[]; ringSize: number };

/** An ACCEPT whose remote connection exists but has not proven itself yet. */
interface ClaimWaiter {
  client: SockAddr;
  answer: (claim: PassiveClaim | null) => void;
  timer: NodeJS.Timeout;
}

export class VerbsHostCA {
  readonly ends = new Map<number, VerbsEndpoint>(); // by rdma_cm handle
  private readonly connecting = new Map<number, Connecting>();
  private readonly passive = new Map<VerbsEndpoint, PassiveInfo>();
  private readonly pendingAccept = new Map<string, VerbsEndpoint[]>();
  private readonly claimWaiters = new Map<string, ClaimWaiter[]>();
  private readonly auth: ClusterAuth;
  private readonly sweep: NodeJS.Timeout;
  /** Runs only while some connection's data path is started (none idle, no cost). */
  private livenessTimer: NodeJS.Timeout | null = null;
  /** Runs only while proven passive ends wait for a claim (see scanLateAccepts). */
  private lateAcceptTimer: NodeJS.Timeout | null = null;
  /** failed connections whose DREQ waits for the local port (holdDreq), since when */
  private readonly heldDreqs = new Map<VerbsEndpoint, number>();
  private readonly resumer: VerbsResumer;
  private warnedNoKey = false;
  private warnedBudget = false;
  private readonly pinned: PinnedBudget;
  private readonly pinnedPerEnd: number;
  private readonly silent: SilentHosts;
  private fabric: VerbsFabric | null;
  private unavailable: string | null = null;
  rdmaAddress: string | null;
  /** bytes of connections already destroyed, for `vtoe stats` */
  closedBytesSent = 0;
  closedBytesReceived = 0;
  closedDoorbells = 0;

  private constructor(
    private readonly config: ResolvedConfig,
    private readonly host: VerbsHostContext,
    private readonly eventLog: EventLog,
    private readonly counters: AgentCounters,
    private readonly log: Logger,
  ) {
    this.auth = loadClusterAuth(config); // a key file it must not use: the fabric stays down
    this.pinnedPerEnd = pinnedBytesPerEnd(config.ringSize);
    this.pinned = new PinnedBudget(pinnedLimit(config.pinnedMax, readHostMemory()));
    if (this.pinned.limit < this.pinnedPerEnd) {
      log.warn('the pinned-memory budget holds no verbs connection: every one uses kernel TCP',
        { budget: this.pinned.limit, perEnd: this.pinnedPerEnd, fix: 'raise VTOE_PINNED_MAX, or the memlock limit (ulimit -l unlimited)' });
    }
    this.silent = new SilentHosts({ holdMs: config.silentHoldMs, probeMs: connectDeadlineMs(config), maxHosts: 4096 });
    this.resumer = new VerbsResumer({
      fabric: () => this.fabric,
      ends: this.ends,
      rdmaAddress: () => this.rdmaAddress,
      portActive: (end) => this.portActive(end),
      reset: (end, why) => this.lostForGood(end, why),
      timeOut: (end, why) => {
        this.log.warn('a verbs connection could not be resumed in time: it times out (ETIMEDOUT)', { cid: end.cid.toString(), why });
        end.suspended = false;
        this.fabric!.timeOut(end.handle); // a timed_out event follows
      },
      watch: () => this.watchLiveness(),
      resumed: () => this.counters.resumes++,
      refuse: (handle, reason, why) => this.refuseRequest(handle, reason, why),
    }, config, this.auth, log);
    this.fabric = this.makeFabric();
    this.rdmaAddress = config.rdmaAddress || findRdmaAddress();
    // Remote connections nobody accepted are checked once per shim timeout (expirePassive).
    this.sweep = setInterval(() => this.guard(() => this.expirePassive()), Math.max(100, config.agentTimeoutMs));
    this.sweep.unref();
  }

  /** The verbs fabric, or why there is none (no device, no rdma-core, port in use); noDevice:
   * rdma_cm has no device yet, which may change. */
  static open(config: ResolvedConfig, host: VerbsHostContext, eventLog: EventLog, counters: AgentCounters,
    log: Logger): VerbsHostCA | { error: string; noDevice: boolean } {
    try {
      return new VerbsHostCA(config, host, eventLog, counters, log);
    } catch (err) {
      return { error: err instanceof Error ? err.message : String(err), noDevice: isNoDevice(err) };
    }
  }

  private makeFabric(): VerbsFabric {
    const fabric = new VerbsFabric({
      onCmEvent: (ev) => this.guard(() => this.onCmEvent(ev)),
      onConnEvent: (ev) => this.guard(() => this.onConnEvent(ev)),
    });
    try {
      // Polling pays only with a core to spare for it (the process on the other side of the
      // rings, and the device's own work, need the rest).
      fabric.setSpin(availableParallelism() > 1 ? this.config.verbsSpinUs : 0);
      this.stagingAllowance(fabric);
      fabric.listen({ address: '0.0.0.0', port: this.config.rdmaPort }, 1024);
    } catch (err) {
      fabric.close();
      throw err;
    }
    return fabric;
  }

  /** After DEVICE_REMOVAL: the fabric again, on whatever device rdma_cm has now.  Null when up,
   * else why not. */
  reopen(): string | null {
    if (this.fabric) return null;
    try {
      this.fabric = this.makeFabric();
      this.unavailable = null;
      this.rdmaAddress = this.config.rdmaAddress || findRdmaAddress();
      return null;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }

  get status(): string {
    const trust = { 'cluster-key': 'cluster key', 'trusted-fabric': 'trusted fabric, unauthenticated',
      'this-host': 'this host only: no VTOE_CLUSTER_KEY_FILE' }[this.auth.mode];
    return this.fabric ? `up on rdma_cm port ${this.config.rdmaPort} (${trust})` : `down: ${this.unavailable}`;
  }

  /** Adaptive polling (VTOE_VERBS_SPIN_US); null while the fabric is down. */
  get polling(): SpinStats | null {
    return this.fabric?.spinStats() ?? null;
  }

  /** Pinned memory: the budget in effect and what the connection ends hold of it. */
  get pinnedMemory(): PinnedSnapshot {
    const staged = this.fabric?.stagingStats();
    return staged ? { ...this.pinned.snapshot(), staged } : this.pinned.snapshot();
  }

  /** Send staging: a connection whose peer's reader lags may buffer up to a large ring's worth
   * (VTOE_RING_MAX_SIZE, with its tx ring: as much as kernel TCP takes before a writer blocks)
   * in what the connection ends leave of the pinned budget, and never more than a quarter of
   * it: the send buffers of readers that lag cannot keep new connections off the fabric. */
  private stagingAllowance(fabric = this.fabric): void {
    fabric?.setStaging(Math.max(0, this.config.ringMaxSize - this.config.ringSize),
      Math.min(Math.floor(this.pinned.limit / 4), this.pinned.unreserved));
  }

  /** Remote hosts whose connections use kernel TCP for now: they left a REQ unanswered. */
  get silentHosts(): { host: string; forMs: number }[] {
    return this.silent.held(monotonicMs());
  }

  get pendingCount(): number {
    let n = 0;
    for (const list of this.pendingAccept.values()) n += list.length;
    return n;
  }

  connCounters(end: VerbsEndpoint): VerbsConnCounters | null {
    if (!this.fabric || end.destroyed) return null;
    try {
      return this.fabric.counters(end.handle);
    } catch {
      return null;
    }
  }

  // ---- active side ----------------------------------------------------------------------

  connect(request: ActiveRequest, done: (outcome: ConnectOutcome) => void): void {
    const fabric = this.fabric;
    const local = isLocalAddress(request.remote.address);
    const target = local ? this.rdmaAddress : request.remote.address;
    if (!fabric || !target) {
      done({ kind: 'fallback', reason: ABI.fb.NO_FABRIC, why: fabric ? 'no RDMA address on this host' : 'verbs fabric down' });
      return;
    }
    if (!local && !this.auth.crossHost) {
      if (!this.warnedNoKey) {
        this.warnedNoKey = true;
        this.log.warn('verbs connections to other hosts stay on kernel TCP: set VTOE_CLUSTER_KEY_FILE on every host (or VTOE_FABRIC_TRUSTED=1 on a closed fabric)');
      }
      done({ kind: 'fallback', reason: ABI.fb.NO_FABRIC, why: 'no cluster key to prove to another host' });
      return;
    }
    const remoteHost = local ? null : canonical(target);
    const silence = remoteHost === null ? null : this.silent.decide(remoteHost, monotonicMs());
    if (silence && !silence.tryFabric) {
      done({ kind: 'fallback', reason: ABI.fb.NO_FABRIC, why: `${remoteHost} did not answer a REQ: kernel TCP for now` });
      return;
    }
    if (!this.reservePinned()) {
      done({ kind: 'fallback', reason: ABI.fb.RESOURCES, why: 'pinned-memory budget' });
      return;
    }
    let handle: number;
    try {
      handle = fabric.resolve({ address: target, port: this.config.rdmaPort }, RESOLVE_TIMEOUT_MS);
    } catch (err) {
      this.pinned.release(this.pinnedPerEnd);
      this.stagingAllowance();
      done({ kind: 'fallback', reason: ABI.fb.NO_FABRIC, why: String(err) });
      return;
    }
    const end = new VerbsEndpoint(this.host.allocateCid(), 0, handle, request.sid, request.local, request.remote, this.eventLog);
    end.pinned = this.pinnedPerEnd;
    end.pid = request.pid;
    end.program = request.program;
    end.tcpStep('app_connect');
    this.ends.set(handle, end);
    // The shim waits agentTimeoutMs for the reply: answer well before, with a fallback.
    const timer = setTimeout(() => this.failConnect(end, ABI.fb.NO_FABRIC, 'rdma_cm connect timed out', 'silent'),
      connectDeadlineMs(this.config));
    timer.unref();
    this.connecting.set(handle, { end, request, done, timer, remoteHost });
  }

  /** The process has its descriptors: the agent's copies of its ends can close. */
  handedOut(end: VerbsEndpoint): void {
    end.handedOut = true;
    this.stopWaiting(end);
    this.fabric?.releaseApp(end.handle);
    // The client's agent holds the client's kernel socket until it hears this.
    if (end.side !== 1) return;
    try {
      this.fabric?.sendAccepted(end.handle, false);
    } catch (err) {
      this.log.debug('cannot tell the client\'s agent that the connection was claimed', { cid: end.cid.toString(), error: String(err) });
    }
  }

  /** Active end: the client's kernel rendezvous socket, kept for a late fallback (owned). */
  keepRendezvous(end: VerbsEndpoint, fd: number): void {
    if (end.destroyed || end.rendezvousFd !== undefined) return closeFd(fd);
    end.rendezvousFd = fd;
  }

  private dropRendezvous(end: VerbsEndpoint): void {
    if (end.rendezvousFd === undefined) return;
    closeFd(end.rendezvousFd);
    end.rendezvousFd = undefined;
  }

  /**
   * The process wrote after its peer's process closed the socket (PEER_RESET from the shim,
   * whose first such write succeeded, as TCP's does): the reset the peer's kernel would answer
   * with.  Its fd hangs up with the fuse the shim queued, so it reads POLLHUP|POLLERR and
   * SO_ERROR EPIPE, and the connection ends.  False if the peer has not closed.
   */
  writtenAfterPeerClosed(end: VerbsEndpoint): boolean {
    if (!end.peerClosed) return false;
    if (end.reset || end.destroyed) return true; // ended already
    end.reset = true;
    this.fabric?.answerWriteAfterClose(end.handle);
    end.tcpStep('rcv_rst');
    this.disconnect(end);
    return true;
  }

  /** The process could not be given its descriptors: reset and forget the connection. */
  abandon(end: VerbsEndpoint): void {
    end.reset = true;
    this.disconnect(end);
  }

  /** heard: whether the other host answered (a REJ, a REP that failed), or left the REQ
   * unanswered ('silent'); undefined when the failure was this host's own. */
  private failConnect(end: VerbsEndpoint, reason: number, why: string, heard?: 'answered' | 'silent'): void {
    const c = this.connecting.get(end.handle);
    if (!c) return;
    this.connecting.delete(end.handle);
    clearTimeout(c.timer);
    if (c.remoteHost !== null && heard === 'silent') this.silent.unanswered(c.remoteHost, monotonicMs());
    if (c.remoteHost !== null && heard === 'answered') this.silent.answered(c.remoteHost);
    this.log.debug('verbs connect falls back', { cid: end.cid.toString(), why });
    if (end.cm === 'REQ_SENT') end.cmStep(reason === ABI.fb.NO_FABRIC ? 'timeout' : 'rcv_rej');
    if (end.cm === 'REP_RCVD') end.cmStep('send_rej'); // the REP could not be acted on
    if (end.cm === 'REJECTED' || end.cm === 'ERROR') end.cmStep('reset');
    if (end.qp !== 'RESET') end.qpStep('to_reset');
    end.tcpStep('rcv_rst');
    this.destroy(end);
    c.done({ kind: 'fallback', reason, why });
  }

  private onRouteResolved(end: VerbsEndpoint, c: Connecting): void {
    const fabric = this.fabric!;
    const window = fabric.createQp(end.handle, this.config.ringSize, end.cid, 0);
    end.qpStep('to_init');
    fabric.modifyQp(end.handle, 'INIT');
    const req = encodeReq({
      ...window, sid: c.request.sid, dstAddress: canonical(c.request.remote.address), dstPort: c.request.remote.port,
      srcPort: c.request.local.port, ringSize: this.config.ringSize,
    });
    end.cmStep('send_req');
    c.req = req;
    fabric.connect(end.handle, req);
  }

  private onConnectResponse(end: VerbsEndpoint, c: Connecting, ev: CmEvent): void {
    const fabric = this.fabric!;
    if (c.remoteHost !== null) this.silent.answered(c.remoteHost);
    end.cmStep('rcv_rep');
    const rep = decodeRep(ev.privateData);
    if (rep.ringSize !== this.config.ringSize) throw new Error(`peer answered ring size ${rep.ringSize}`);
    if (!macEqual(rep.mac, repMac(this.auth.key, c.req!, ev.privateData.subarray(0, REP_MAC_AT)))) {
      this.counters.refused('peer-unauthenticated');
      this.log.warn('a remote agent answered without proving the cluster key; the connection stays on kernel TCP',
        { remote: ev.remote?.address, why: 'REP MAC mismatch: is VTOE_CLUSTER_KEY_FILE the same on both hosts?' });
      return this.failConnect(end, ABI.fb.NO_FABRIC, 'the peer agent did not prove the cluster key', 'answered');
    }
    fabric.modifyQp(end.handle, 'RTR');
    end.qpStep('to_rtr');
    fabric.modifyQp(end.handle, 'RTS');
    end.qpStep('to_rts');
    fabric.establish(end.handle);
    end.cmStep('send_rtu');
    end.token = rep.nonce;
    fabric.start(end.handle, rep, { send: rtuMac(this.auth.key, rep.nonce, c.req!) });
    this.watchLiveness();
    this.connecting.delete(end.handle);
    clearTimeout(c.timer);
    this.counters.connectionOffloaded([end.program]);
    c.done({ kind: 'connected', end, fds: fabric.fdsForApp(end.handle), ringSize: this.config.ringSize });
  }

  /** ESTABLISH note: the kernel rendezvous connected (TCP's SYN-ACK). */
  rendezvousDone(end: VerbsEndpoint): void {
    end.tcpStep('rcv_synack');
  }

  // ---- passive side ---------------------------------------------------------------------

  private onConnectRequest(ev: CmEvent): void {
    const fabric = this.fabric!;
    let resume: ResumeReqData | null;
    try {
      resume = decodeResumeReq(ev.privateData);
    } catch (err) {
      return this.refuseRequest(ev.handle, ABI.fb.NO_FABRIC, `malformed resume REQ: ${String(err)}`);
    }
    if (resume) return this.resumer.onRequest(ev, resume);
    const reject = (reason: number, why: string): void => {
      this.refuseRequest(ev.handle, reason, why);
      this.counters.rejected++; // a connection that did not complete (resumes are not counted)
    };
    let req: ReqData;
    try {
      req = decodeReq(ev.privateData);
    } catch (err) {
      return reject(ABI.fb.PEER_NOT_OFFLOADED, String(err));
    }
    // The remote does not choose how much memory this agent registers for it.
    if (req.ringSize !== this.config.ringSize) {
      return reject(ABI.fb.RESOURCES, `ring size ${req.ringSize}, not this agent's ${this.config.ringSize}`);
    }
    const remoteIp = ev.remote?.address ?? '0.0.0.0';
    const fromThisHost = isLocalAddress(remoteIp);
    if (!fromThisHost && !this.auth.crossHost) {
      this.counters.refused('peer-unauthenticated');
      return reject(ABI.fb.NO_FABRIC, `REQ from ${remoteIp}, and no cluster key to check it with`);
    }
    const family = req.dstAddress.includes(':') ? 6 : 4;
    const listener = this.host.findListener(family, req.dstAddress, req.dstPort);
    if (!listener) return reject(ABI.fb.PEER_NOT_OFFLOADED, `nothing offloaded listens at ${req.dstAddress}:${req.dstPort}`);
    if (!this.host.hasCapacity()) return reject(ABI.fb.RESOURCES, 'connection limit');
    if (this.unacceptedFor(listener.sid) >= this.config.maxPendingAccepts) {
      this.counters.refused('passive-backlog');
      return reject(ABI.fb.RESOURCES, `listener ${req.dstAddress}:${req.dstPort} holds VTOE_MAX_PENDING_ACCEPTS unaccepted connections`);
    }
    if (!this.reservePinned()) return reject(ABI.fb.RESOURCES, 'pinned-memory budget');
    const reqBytes = ev.privateData.subarray(0, REQ_PRIVATE_DATA_MAX);
    const nonce = newNonce();
    const local: SockAddr = { family, address: req.dstAddress, port: req.dstPort, scopeId: 0 };
    const remote: SockAddr = { family: remoteIp.includes(':') ? 6 : 4, address: remoteIp, port: req.srcPort, scopeId: 0 };
    const end = new VerbsEndpoint(this.host.allocateCid(), 1, ev.handle, null, local, remote, this.eventLog);
    end.pinned = this.pinnedPerEnd;
    end.token = nonce;
    end.cmStep('rcv_req');
    end.tcpStep('rcv_syn');
    this.ends.set(ev.handle, end);
    // Counted before the REP leaves: the client's kernel rendezvous follows the REP, and the
    // listener's processes must see it counted when they accept it (the agent may lose its CPU
    // right after sending the REP).
    this.host.waitingChanged(req.dstPort, 1);
    try {
      const window = fabric.createQp(ev.handle, req.ringSize, end.cid, 1);
      fabric.modifyQp(ev.handle, 'INIT');
      end.qpStep('to_init');
      fabric.modifyQp(ev.handle, 'RTR');
      end.qpStep('to_rtr');
      const rep = encodeRep({ ...window, ringSize: req.ringSize, nonce, mac: Buffer.alloc(16) });
      repMac(this.auth.key, reqBytes, rep.subarray(0, REP_MAC_AT)).copy(rep, REP_MAC_AT);
      fabric.accept(ev.handle, rep);
      end.cmStep('send_rep');
    } catch (err) {
      this.log.warn('cannot answer a verbs REQ; the client falls back to kernel TCP', { error: String(err) });
      this.ends.delete(ev.handle);
      this.host.waitingChanged(req.dstPort, -1);
      this.releasePinned(end);
      end.cmStep('send_rej');
      end.cmStep('reset');
      if (end.qp !== 'RESET') end.qpStep('to_reset');
      return reject(ABI.fb.RESOURCES, String(err));
    }
    const key = acceptKey(req.dstPort, req.srcPort);
    this.passive.set(end, { peer: req, listenerSid: listener.sid, key, fromThisHost,
      program: listener.program ?? '?', expect: rtuMac(this.auth.key, nonce, reqBytes), authenticated: false,
      since: Date.now(), waiting: true });
    const list = this.pendingAccept.get(key) ?? [];
    list.push(end);
    this.pendingAccept.set(key, list);
  }

  /** A REJ for a REQ (a first one, or a resume) that this agent will not take. */
  private refuseRequest(handle: number, reason: number, why: string): void {
    this.log.debug('verbs REQ rejected', { why });
    try {
      this.fabric!.reject(handle, encodeRej(reason));
    } catch { /* the requester times out instead */ }
    this.fabric!.destroy(handle);
  }

  /** RTU (or the process's ACCEPT, whichever the agent sees first): RTS, data flows. */
  private passiveEstablished(end: VerbsEndpoint): void {
    const info = this.passive.get(end);
    if (!info || end.cm !== 'REP_SENT') return;
    end.cmStep('rcv_rtu');
    this.fabric!.modifyQp(end.handle, 'RTS');
    end.qpStep('to_rts');
    end.tcpStep('rcv_ack');
    this.fabric!.start(end.handle, info.peer, { expect: info.expect });
    this.watchLiveness();
  }

  /** A remote host can die unseen: judge each running connection's peer (src/agent/liveness.ts). */
  private watchLiveness(): void {
    if (this.livenessTimer) return;
    this.livenessTimer = setInterval(() => this.guard(() => this.checkLiveness()), LIVENESS_CHECK_MS);
    this.livenessTimer.unref();
  }

  private checkLiveness(): void {
    this.sendHeldDreqs();
    this.resumer.tick();
    let running = this.heldDreqs.size + this.resumer.busy;
    for (const end of [...this.ends.values()]) {
      if (end.destroyed || end.reset || !end.established || end.qp !== 'RTS' || end.suspended) continue;
      running++;
      const sample = this.fabric!.liveness(end.handle);
      const verdict = judgeLiveness(sample, this.config.peerTimeoutMs);
      if (verdict.action === 'resume' && this.portActive(end)) {
        this.resumer.suspended(end, verdict.why, sample.unackedMs, unackedLimitMs(sample, this.config.peerTimeoutMs), true);
      } else if (verdict.action === 'probe') {
        if (this.fabric!.probe(end.handle)) this.log.debug('probing a quiet peer', { cid: end.cid.toString(), why: verdict.why });
      } else if (verdict.action === 'time-out') {
        this.log.warn('a remote peer fell silent: its connection times out (ETIMEDOUT)',
          { cid: end.cid.toString(), remote: end.remote?.address, why: verdict.why });
        this.fabric!.timeOut(end.handle); // a timed_out event follows
      }
    }
    if (running === 0 && this.livenessTimer) {
      clearInterval(this.livenessTimer);
      this.livenessTimer = null;
    }
  }

  /**
   * ACCEPT: the process accepted the kernel rendezvous from client on listenerPort (the core CA
   * checked the accepted socket: this is its capability).  Answers with the proven remote
   * connection of that client, at once or, while its proof is still on the way (RDMA may lose
   * the race with the kernel rendezvous), once it arrives.  False: there is none to wait for.
   */
  claimPassive(listenerPort: number, client: SockAddr, answer: (claim: PassiveClaim | null) => void): boolean {
    const key = acceptKey(listenerPort, client.port);
    if (!this.fabric || this.candidates(key, client).length === 0) return false;
    const claim = this.tryClaim(key, client);
    if (claim) {
      answer(claim);
      return true;
    }
    const waiter: ClaimWaiter = { client, answer, timer: setTimeout(() => this.guard(() => this.claimTimedOut(key, waiter)),
      Math.max(100, Math.floor(this.config.agentTimeoutMs * 0.8))) };
    waiter.timer.unref();
    const list = this.claimWaiters.get(key) ?? [];
    list.push(waiter);
    this.claimWaiters.set(key, list);
    return true;
  }

  /** A passive end no longer waits for a claim: claimed, or gone. */
  private stopWaiting(end: VerbsEndpoint): void {
    const info = this.passive.get(end);
    if (!info?.waiting) return;
    info.waiting = false;
    this.host.waitingChanged(info.peer.dstPort, -1);
  }

  /** Whether a passive end waits for a claim on these ports (whatever the client's address). */
  waitsOnPorts(listenerPort: number, clientPort: number): boolean {
    return !!this.fabric && (this.pendingAccept.get(acceptKey(listenerPort, clientPort))?.length ?? 0) > 0;
  }

  private candidates(key: string, client: SockAddr): VerbsEndpoint[] {
    return (this.pendingAccept.get(key) ?? []).filter((e) => canonical(e.remote!.address) === canonical(client.address)
      || (this.passive.get(e)?.fromThisHost === true && isLocalAddress(client.address)));
  }

  private tryClaim(key: string, client: SockAddr): PassiveClaim | null {
    const end = this.candidates(key, client).find((e) => this.passive.get(e)?.authenticated);
    if (!end || !this.fabric) return null;
    const info = this.passive.get(end)!;
    this.unlistPending(end, false);
    this.passiveEstablished(end);
    // Both ends in this agent (VTOE_FABRIC=verbs on one host): the active end bound a wildcard;
    // the accept shows its real address.
    const listenerPort = end.local!.port;
    for (const other of this.ends.values()) {
      if (other.side === 0 && other.local?.port === client.port && other.remote?.port === listenerPort
        && isWildcard(other.local.address)) other.local = client;
    }
    return { end, fds: this.fabric.fdsForApp(end.handle), ringSize: info.peer.ringSize };
  }

  /** A remote connection on key proved itself, or went: answer the ACCEPTs waiting for one. */
  private retryClaims(key: string): void {
    const waiters = this.claimWaiters.get(key);
    if (!waiters) return;
    for (const w of [...waiters]) {
      const claim = this.tryClaim(key, w.client);
      if (!claim && this.candidates(key, w.client).length > 0) continue;
      this.dropWaiter(key, w);
      w.answer(claim);
    }
  }

  private claimTimedOut(key: string, waiter: ClaimWaiter): void {
    this.dropWaiter(key, waiter);
    // Its client never proved the key in time: what it sent is not a connection to hand out.
    for (const end of this.candidates(key, waiter.client)) this.expire(end, 'peer-unauthenticated', 'no proof of the cluster key');
    waiter.answer(null);
  }

  private dropWaiter(key: string, waiter: ClaimWaiter): void {
    clearTimeout(waiter.timer);
    const list = this.claimWaiters.get(key);
    const i = list?.indexOf(waiter) ?? -1;
    if (list && i >= 0) list.splice(i, 1);
    if (list?.length === 0) this.claimWaiters.delete(key);
  }

  private unacceptedFor(listenerSid: number): number {
    let n = 0;
    for (const [end, info] of this.passive) if (info.listenerSid === listenerSid && this.unclaimed(end)) n++;
    return n;
  }

  /**
   * Remote connections that waited two shim timeouts for an ACCEPT: those that never proved
   * the key, and those no kernel rendezvous followed (the kernel has no socket with their
   * ports), are reset.  One whose rendezvous waits in the accept queue stays, as on kernel TCP.
   */
  private expirePassive(): void {
    const old = Date.now() - 2 * Math.max(100, this.config.agentTimeoutMs);
    for (const [end, info] of [...this.passive]) {
      if (!this.unclaimed(end) || info.since > old) continue;
      if (!info.authenticated) this.expire(end, 'peer-unauthenticated', 'no proof of the cluster key');
      else if (!kernelHasTcpPorts(end.local!.port, end.remote!.port)) this.expire(end, 'passive-unclaimed', 'no kernel rendezvous');
    }
  }

  private expire(end: VerbsEndpoint, why: 'peer-unauthenticated' | 'passive-unclaimed', detail: string): void {
    this.counters.refused(why);
    this.log.warn('a remote connection nobody can accept is reset', { cid: end.cid.toString(), remote: end.remote?.address, detail });
    this.unlistPending(end);
    end.reset = true;
    end.tcpStep('app_abort');
    this.disconnect(end);
  }

  /** A passive end that waits for its process's ACCEPT: not handed out, not gone to kernel TCP. */
  private unclaimed(end: VerbsEndpoint): boolean {
    return !end.handedOut && !end.kernelAccepted && !end.destroyed;
  }

  /** A remote connection to the listener waits for its process's ACCEPT. */
  hasPassiveFor(listenerSid: number): boolean {
    for (const [end, info] of this.passive) if (info.listenerSid === listenerSid && this.unclaimed(end)) return true;
    return false;
  }

  /** The listener closed: connections nobody accepted are reset, as the kernel resets them. */
  listenerClosed(listenerSid: number): void {
    for (const [end, info] of this.passive) {
      if (info.listenerSid !== listenerSid || !this.unclaimed(end)) continue;
      this.unlistPending(end);
      end.reset = true;
      end.tcpStep('app_abort');
      this.disconnect(end);
    }
  }

  // ---- late fallback ---------------------------------------------------------------------

  /**
   * While proven passive ends wait for a claim, ask the kernel (one read of its TCP table)
   * whether a process accepted one's kernel rendezvous: accepted and still unclaimed for
   * LATE_ACCEPT_GRACE_MS means a process without the shim or the agent took the connection on
   * kernel TCP.  Then the passive end tells the client's agent so (`accepted`, kernel), and that
   * agent carries the stream over the client's kernel socket from what its process wrote:
   * nothing reached a process here, so nothing is lost.
   */
  private watchLateAccepts(): void {
    if (this.lateAcceptTimer) return;
    this.lateAcceptTimer = setInterval(() => this.guard(() => this.scanLateAccepts()), LATE_ACCEPT_SCAN_MS);
    this.lateAcceptTimer.unref();
  }

  private scanLateAccepts(): void {
    const now = Date.now();
    const waiting = [...this.passive].filter(([end, info]) => info.authenticated && this.unclaimed(end) && !end.reset);
    if (waiting.length === 0 && this.lateAcceptTimer) {
      clearInterval(this.lateAcceptTimer);
      this.lateAcceptTimer = null;
      return;
    }
    const due = waiting.filter(([, info]) => now - info.since >= LATE_ACCEPT_SCAN_MS);
    if (due.length === 0) return;
    const inodes = kernelTcpInodes();
    for (const [end, info] of due) {
      if (!inodes.get(`${end.local!.port}:${end.remote!.port}`)) {
        info.acceptedUnclaimedAt = undefined;
      } else if (info.acceptedUnclaimedAt === undefined) {
        info.acceptedUnclaimedAt = now;
      } else if (now - info.acceptedUnclaimedAt >= LATE_ACCEPT_GRACE_MS) {
        this.handToKernel(end, info);
      }
    }
  }

  /** Passive end: a process took the connection on kernel TCP.  A later ACCEPT gets FALLBACK. */
  private handToKernel(end: VerbsEndpoint, info: PassiveInfo): void {
    this.counters.fallback('late-accept', info.program);
    this.log.info('late fallback: a process without the shim accepted a verbs connection; its client\'s agent carries it over kernel TCP',
      { cid: end.cid.toString(), remote: end.remote?.address });
    end.kernelAccepted = true;
    this.unlistPending(end);
    this.stopWaiting(end);
    this.fabric!.sendAccepted(end.handle, true); // the client's agent answers with its DREQ
  }

  /**
   * Active end: the server took the connection on kernel TCP (verbs_wire.h, `accepted`).
   * The passive end never gave its process a byte, so the client's tx ring still holds all it
   * wrote: the QP goes, and a relay carries the stream between the process's rings and its
   * kernel rendezvous socket, as the server's side would have (native/shm_relay.cc).
   */
  private carryOverKernel(end: VerbsEndpoint): void {
    const fd = end.rendezvousFd;
    end.rendezvousFd = undefined;
    this.toError(end);
    try {
      if (fd === undefined) throw new Error('the client\'s kernel socket is not held');
      this.fabric!.relay(end.handle, fd); // owns fd from here on
      end.relayed = true;
      this.log.info('late fallback: the server took a verbs connection on kernel TCP; the agent carries it over the client\'s kernel socket',
        { cid: end.cid.toString() });
    } catch (err) {
      this.log.error('cannot carry a late-fallback connection over kernel TCP; resetting it', { cid: end.cid.toString(), error: String(err) });
      end.reset = true;
      try {
        this.fabric!.resetApp(end.handle);
      } catch { /* handed over already: its region went with the relay */ }
      end.tcpStep('rcv_rst');
    }
    this.disconnect(end);
  }

  // ---- teardown -------------------------------------------------------------------------

  /** The process's socket record is gone (CLOSE note, or its control channel closed). */
  sidClosed(end: VerbsEndpoint, flags: number): void {
    if (flags & ABI.close.ABORTED) {
      // The kernel rendezvous failed after RTU: the passive end must not wait for an accept.
      end.reset = true;
      end.tcpStep('app_abort');
      this.disconnect(end);
    }
  }

  private onConnEvent(ev: ConnEvent): void {
    const end = this.ends.get(ev.handle);
    if (!end || end.destroyed) return;
    switch (ev.type) {
      case 'fin_sent':
        end.finSent = true;
        if (!end.peerFin) end.firstCloser = true;
        end.tcpStep('app_close');
        end.tcpStep('rcv_fin_ack'); // RC delivered it
        break;
      case 'peer_fin':
        end.peerFin = true;
        end.tcpStep('rcv_fin');
        break;
      case 'peer_closed':
        end.peerClosed = true;
        break; // the CM waits for FINs; a write now is answered by writtenAfterPeerClosed
      case 'authenticated': {
        const info = this.passive.get(end);
        if (!info) return;
        info.authenticated = true;
        // Between hosts each agent counts the connection and its own program; within this
        // host the active end counted the connection, and the listener's program joins it.
        if (!info.fromThisHost) this.counters.connectionOffloaded([info.program]);
        else this.counters.programJoined(info.program, this.activeProgramsOf(info.peer));
        this.watchLateAccepts();
        return this.retryClaims(info.key);
      }
      case 'app_closed':
        if (ev.detail === 'reset') {
          end.reset = true;
          end.tcpStep('app_abort');
          return this.disconnect(end);
        }
        break;
      case 'timed_out':
        this.counters.peerTimeouts++;
        end.reset = true;
        end.tcpStep('timeout_rto');
        return this.disconnect(end);
      case 'claimed':
        return this.dropRendezvous(end);
      case 'kernel_accepted':
        return this.carryOverKernel(end);
      case 'link_lost': {
        const sample = this.fabric!.liveness(end.handle);
        return this.resumer.suspended(end, ev.detail, sample.unackedMs, unackedLimitMs(sample, this.config.peerTimeoutMs), false);
      }
      case 'peer_reset':
      case 'qp_error':
      case 'protocol':
        if (ev.type === 'protocol' && this.passive.get(end)?.authenticated === false) {
          this.counters.refused('peer-unauthenticated');
          this.log.warn('a remote agent did not prove the cluster key: its connection is reset',
            { remote: end.remote?.address, detail: ev.detail, fix: 'is VTOE_CLUSTER_KEY_FILE the same on both hosts?' });
        } else if (ev.type !== 'peer_reset') {
          this.log.warn('verbs connection failed', { cid: end.cid.toString(), type: ev.type, detail: ev.detail });
        }
        end.reset = true;
        end.tcpStep('rcv_rst');
        return this.disconnect(end);
    }
    if (end.finSent && end.peerFin && end.firstCloser) this.disconnect(end);
  }

  /** DREQ, QP to ERR.  The DREP (a DISCONNECTED event) then moves the CM to TIMEWAIT. */
  private disconnect(end: VerbsEndpoint): void {
    if (end.destroyed || end.disconnecting) return;
    this.unlistPending(end);
    if (end.cm === 'ESTABLISHED') {
      if (!this.portActive(end)) return this.holdDreq(end);
      this.sendDreq(end);
    } else {
      end.cmStep('conn_error');
    }
    this.toError(end);
    this.startTimewait(end);
  }

  /**
   * A DREQ sent while the local port is down is lost (rdma_cm reports it DISCONNECTED at once),
   * and the peer, whose packets to a QP in ERR are dropped without a word, would wait for its
   * own timeout: a reset the peer never hears of.  So the QP goes to ERR now and the DREQ waits
   * for the port to come back, checked with the liveness round, for at most the peer timeout.
   */
  private holdDreq(end: VerbsEndpoint): void {
    this.toError(end);
    if (this.heldDreqs.has(end)) return;
    this.heldDreqs.set(end, Date.now());
    this.log.info('the local port is down: the DREQ of a failed connection waits for it', { cid: end.cid.toString() });
    this.watchLiveness();
  }

  private sendHeldDreqs(): void {
    for (const [end, since] of this.heldDreqs) {
      if (end.destroyed || end.cm !== 'ESTABLISHED') {
        this.heldDreqs.delete(end);
        continue;
      }
      if (!this.portActive(end) && Date.now() - since < this.config.peerTimeoutMs) continue;
      this.heldDreqs.delete(end);
      this.sendDreq(end);
      this.startTimewait(end);
    }
  }

  private sendDreq(end: VerbsEndpoint): void {
    end.cmStep('send_dreq');
    try {
      this.fabric!.disconnect(end.handle);
    } catch (err) {
      this.log.debug('rdma_disconnect failed', { error: String(err) });
    }
  }

  /** A connection that cannot be resumed (the peer no longer has it): ECONNRESET, as after an RST. */
  private lostForGood(end: VerbsEndpoint, why: string): void {
    this.log.warn('a verbs connection cannot be resumed: it is reset', { cid: end.cid.toString(), why });
    end.suspended = false;
    end.reset = true;
    this.fabric?.resetApp(end.handle);
    end.tcpStep('rcv_rst');
    this.disconnect(end);
  }

  private portActive(end: VerbsEndpoint): boolean {
    try {
      return this.fabric!.portActive(end.handle);
    } catch {
      return true;
    }
  }

  private onDisconnected(end: VerbsEndpoint): void {
    if (end.cm === 'DREQ_SENT') {
      end.cmStep('rcv_drep');
      return;
    }
    if (end.cm !== 'ESTABLISHED') {
      if (!end.disconnecting) {
        end.cmStep('conn_error');
        this.unlistPending(end);
        this.toError(end);
        this.startTimewait(end);
      }
      return;
    }
    end.cmStep('rcv_dreq');
    this.toError(end); // handles completions still queued: a FIN or reset just before the DREQ
    const rx = this.connCounters(end)?.rings[1 - end.side];
    // A stream that went to kernel TCP has no process on the fabric to tell.
    if (!end.reset && !end.relayed && !end.kernelAccepted && !(rx?.fin || rx?.reset)) {
      // Disconnected with the stream unfinished: the peer is gone, TCP would see a reset.
      end.reset = true;
      this.fabric!.resetApp(end.handle);
      end.tcpStep('rcv_rst');
    }
    try {
      this.fabric!.disconnect(end.handle); // DREP
    } catch { /* the peer's DREQ times out */ }
    end.cmStep('send_drep');
    this.startTimewait(end);
  }

  private toError(end: VerbsEndpoint): void {
    if (end.qp === 'RESET' || end.qp === 'ERR') return;
    try {
      this.fabric!.modifyQp(end.handle, 'ERR');
      end.qpStep('to_err');
    } catch (err) {
      this.log.debug('QP to ERR failed', { error: String(err) });
    }
  }

  private startTimewait(end: VerbsEndpoint): void {
    if (end.timer) return;
    end.timer = setTimeout(() => this.guard(() => this.timewaitDone(end)), this.config.timewaitMs);
    end.timer.unref();
  }

  private timewaitDone(end: VerbsEndpoint): void {
    if (end.destroyed) return;
    if (end.cm === 'DREQ_SENT') end.cmStep('timeout');
    if (end.cm === 'TIMEWAIT') end.cmStep('timewait_done');
    if (end.cm === 'ERROR' || end.cm === 'REJECTED') end.cmStep('reset');
    if (end.qp !== 'RESET') end.qpStep('to_reset');
    if (end.tcp === 'TIME_WAIT') end.tcpStep('timeout_2msl');
    this.destroy(end);
  }

  private unlistPending(end: VerbsEndpoint, answerWaiters = true): void {
    const info = this.passive.get(end);
    if (!info) return;
    const list = this.pendingAccept.get(info.key);
    const i = list?.indexOf(end) ?? -1;
    if (list && i >= 0) list.splice(i, 1);
    if (list?.length === 0) this.pendingAccept.delete(info.key);
    if (i >= 0 && answerWaiters) this.retryClaims(info.key);
  }

  private destroy(end: VerbsEndpoint): void {
    if (end.destroyed) return;
    const c = this.connCounters(end);
    if (c) {
      this.closedBytesSent += c.rings[end.side].head;
      this.closedBytesReceived += c.rings[1 - end.side]!.tail;
      this.closedDoorbells += c.rings[1 - end.side]!.wakes;
    }
    end.destroyed = true;
    this.dropRendezvous(end);
    this.releasePinned(end);
    if (end.timer) clearTimeout(end.timer);
    this.unlistPending(end);
    this.stopWaiting(end);
    this.passive.delete(end);
    this.ends.delete(end.handle);
    this.fabric?.destroy(end.handle);
    this.host.changed();
  }

  /** One end's pages, if they fit the budget; the first refusal is logged, later ones counted. */
  private reservePinned(): boolean {
    if (this.pinned.reserve(this.pinnedPerEnd, this.fabric?.stagingStats().bytes ?? 0)) {
      this.stagingAllowance();
      return true;
    }
    if (!this.warnedBudget) {
      this.warnedBudget = true;
      const { bytes, limit } = this.pinned.snapshot();
      this.log.warn('pinned-memory budget reached: new verbs connections use kernel TCP until others close',
        { pinned: bytes, budget: limit, fix: 'raise VTOE_PINNED_MAX (and the memlock limit), or use smaller VTOE_RING_SIZE' });
    }
    return false;
  }

  private releasePinned(end: VerbsEndpoint): void {
    this.pinned.release(end.pinned);
    end.pinned = 0;
    this.stagingAllowance();
  }

  // ---- events ---------------------------------------------------------------------------

  private onCmEvent(ev: CmEvent): void {
    const code = CM_EVENT_CODES[ev.type];
    if (code !== undefined) this.counters.event(code); // `vtoe stats` counts every rdma_cm event
    if (ev.type === 'CONNECT_REQUEST') return this.onConnectRequest(ev);
    if (ev.type === 'DEVICE_REMOVAL') return this.deviceRemoved(ev);
    if (this.resumer.owns(ev.handle)) return this.resumer.onCmEvent(ev);
    const end = this.ends.get(ev.handle);
    if (!end || end.destroyed) return;
    const c = this.connecting.get(ev.handle);
    try {
      this.dispatchCm(ev, end, c);
    } catch (err) {
      if (!c) throw err;
      this.log.warn('verbs connect failed; falling back to kernel TCP', { error: String(err) });
      this.failConnect(end, ABI.fb.RESOURCES, String(err));
    }
  }

  private dispatchCm(ev: CmEvent, end: VerbsEndpoint, c: Connecting | undefined): void {
    switch (ev.type) {
      case 'ADDRESS_RESOLVED':
        if (c) this.fabric!.resolveRoute(ev.handle, RESOLVE_TIMEOUT_MS);
        return;
      case 'ROUTE_RESOLVED':
        if (c) this.onRouteResolved(end, c);
        return;
      case 'CONNECT_RESPONSE':
        if (c) this.onConnectResponse(end, c, ev);
        return;
      case 'ADDRESS_ERROR':
      case 'ROUTE_ERROR':
      case 'UNREACHABLE':
      case 'CONNECT_ERROR':
        if (c) return this.failConnect(end, ABI.fb.NO_FABRIC, `${ev.type} (status ${ev.status})`, 'silent');
        end.reset = true;
        return this.onDisconnected(end);
      case 'CONNECT_REJECTED':
        if (c) return this.failConnect(end, decodeRej(ev.privateData) ?? ABI.fb.PEER_NOT_OFFLOADED, `REJ (reason ${ev.status})`, 'answered');
        return this.onDisconnected(end);
      case 'CONNECT_ESTABLISHED':
        if (end.side === 1) this.passiveEstablished(end);
        return;
      case 'DISCONNECTED':
        return this.onDisconnected(end);
      case 'TIMEWAIT_EXIT':
        if (end.cm === 'TIMEWAIT') this.timewaitDone(end);
        return;
      default:
        return;
    }
  }

  private deviceRemoved(ev: CmEvent): void {
    this.log.warn('RDMA device removed: its connections are reset, new ones use kernel TCP', { handle: ev.handle });
    for (const c of [...this.connecting.values()]) this.failConnect(c.end, ABI.fb.NO_FABRIC, 'device removed');
    this.resumer.close(); // its attempts' ids go with the fabric
    for (const end of [...this.ends.values()]) {
      try {
        this.fabric!.resetApp(end.handle);
      } catch { /* no QP yet */ }
      end.tcpStep('rcv_rst');
      if (end.cm !== 'IDLE') end.cmStep('device_removal');
      if (end.qp !== 'RESET' && end.qp !== 'ERR') end.qpStep('to_err');
      this.destroy(end);
    }
    this.unavailable = 'the RDMA device was removed';
    this.fabric!.close();
    this.fabric = null;
    this.host.fabricLost();
  }

  /** The program of this host's active end of the connection a REQ asked for (by its TCP
   * ports; none found: it is not here). */
  private activeProgramsOf(req: ReqData): string[] {
    for (const e of this.ends.values()) {
      if (e.side === 0 && e.local?.port === req.srcPort && e.remote?.port === req.dstPort) return [e.program];
    }
    return [];
  }

  /** Never let one connection's surprise stop the fabric: log it and fail that connection. */
  private guard(body: () => void): void {
    try {
      body();
    } catch (err) {
      this.log.error('verbs fabric handler failed', { error: err instanceof Error ? err.stack : String(err) });
    } finally {
      this.host.changed();
    }
  }

  close(): void {
    clearInterval(this.sweep);
    if (this.livenessTimer) clearInterval(this.livenessTimer);
    if (this.lateAcceptTimer) clearInterval(this.lateAcceptTimer);
    for (const end of this.ends.values()) this.dropRendezvous(end);
    for (const list of this.claimWaiters.values()) for (const w of list) clearTimeout(w.timer);
    this.claimWaiters.clear();
    for (const c of this.connecting.values()) clearTimeout(c.timer);
    for (const end of this.ends.values()) if (end.timer) clearTimeout(end.timer);
    this.resumer.close();
    this.fabric?.close();
    this.fabric = null;
    this.unavailable = 'the agent stopped';
  }
}

function acceptKey(listenerPort: number, clientPort: number): string {
  return `${listenerPort}:${clientPort}`;
}

function isNoDevice(err: unknown): boolean {
  return err instanceof VtoeSystemError && err.code === 'ENODEV';
}
