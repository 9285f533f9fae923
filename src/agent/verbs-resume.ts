// Resuming a verbs connection on a new QP, as TCP rides out a link flap.
//
// A QP fails for good when its link does (Soft-RoCE fails it on the first send that finds no
// route; a hardware HCA after its 7 retries), or it can be left unable to send again.  Neither
// is a reason to end a TCP connection, so the agent keeps the process's socket and its rings,
// and connects a new QP to the peer's agent (a resume REQ naming the connection by its token,
// the first REP's nonce).  Both sides say where their receive streams stand; each sends again
// from what the other has (its tx ring still holds every byte the peer has not consumed).
// Either side may start it; when both do, the original active side's REQ wins.  A connection
// that cannot be resumed within the socket's own timeout (TCP_USER_TIMEOUT, else
// VTOE_PEER_TIMEOUT_MS) ends with ETIMEDOUT; one the peer no longer knows, with ECONNRESET.
import { ABI } from '../abi.js';
import type { ResolvedConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { CmEvent, ResumePoint, VerbsFabric, WireAuth } from '../native-verbs.js';
import { macEqual, newNonce, resumeRepMac, resumeReqMac, rtuMac, type ClusterAuth } from './cluster-key.js';
import { isLocalAddress } from './local-addresses.js';
import type { VerbsEndpoint } from './verbs-endpoint.js';
import {
  decodeRej, decodeResumeRep, encodeResumeRep, encodeResumeReq, RESUME_MAC_AT, type ResumeReqData,
} from './verbs-wire.js';

/** The IB CM's REJ reason when nothing listens on the service ID (the agents' rdma_cm port). */
const IB_CM_REJ_INVALID_SERVICE_ID = 8;
/** How long one attempt may take, and the pause before the next. */
const ATTEMPT_MS = 5000;
const RETRY_MS = 1000;

/** What the resumer needs from the verbs host CA. */
export interface ResumeContext {
  fabric(): VerbsFabric | null;
  readonly ends: Map<number, VerbsEndpoint>;
  rdmaAddress(): string | null;
  portActive(end: VerbsEndpoint): boolean;
  /** The peer no longer has the connection: a reset, as TCP's RST. */
  reset(end: VerbsEndpoint, why: string): void;
  /** The socket's own timeout ran out: ETIMEDOUT. */
  timeOut(end: VerbsEndpoint, why: string): void;
  /** The liveness round must run while anything waits here. */
  watch(): void;
  /** One connection resumed: counted for `vtoe stats`. */
  resumed(): void;
  /** REJ the REQ on handle, with a vtoe fallback reason. */
  refuse(handle: number, reason: number, why: string): void;
}

interface Lost {
  /** Date.now() when the connection stopped making progress */
  since: number;
  /** the socket's own limit (liveness.ts unackedLimitMs) */
  limitMs: number;
  /** no attempt before this */
  next: number;
}

interface Attempt {
  end: VerbsEndpoint;
  initiator: boolean;
  /** the id the connection had (initiator: until the REP; a failed attempt moves it back) */
  old: number;
  adopted: boolean;
  generation: number;
  req?: Buffer;
  /** responder: the peer's position and the proof its first message must carry */
  peer?: ResumePoint;
  expect?: Buffer;
  timer: NodeJS.Timeout;
}

export class VerbsResumer {
  private readonly lost = new Map<VerbsEndpoint, Lost>();
  private readonly attempts = new Map<number, Attempt>(); // by the attempt's rdma_cm handle

  constructor(
    private readonly ctx: ResumeContext,
    private readonly config: Pick<ResolvedConfig, 'rdmaPort' | 'peerTimeoutMs'>,
    private readonly auth: ClusterAuth,
    private readonly log: Logger,
  ) {}

  get busy(): number {
    return this.lost.size + this.attempts.size;
  }

  owns(handle: number): boolean {
    return this.attempts.has(handle);
  }

  /**
   * The data path lost its QP (link_lost), or (suspend) the liveness round found it stuck:
   * sends unacknowledged for unackedMs with the port up.
   */
  suspended(end: VerbsEndpoint, why: string, unackedMs: number, limitMs: number, suspend: boolean): void {
    // Not yet proven, or already closing: a failed QP ends it, as before there was a resume.
    if (!end.token || end.reset || end.destroyed || end.cm !== 'ESTABLISHED') return this.ctx.reset(end, why);
    if (suspend) this.ctx.fabric()!.suspend(end.handle);
    end.suspended = true;
    if (end.qp === 'RTS') end.qpStep('to_err');
    if (!this.lost.has(end)) this.lost.set(end, { since: Date.now() - unackedMs, limitMs, next: 0 });
    this.log.warn('a verbs connection lost its QP: resuming it on a new one', { cid: end.cid.toString(), why });
    this.ctx.watch();
  }

  /** The liveness round: give up, or start an attempt once the port is up. */
  tick(): void {
    const now = Date.now();
    for (const [end, l] of this.lost) {
      if (end.destroyed || end.reset || !end.suspended) {
        this.lost.delete(end);
        continue;
      }
      if (now - l.since >= l.limitMs) {
        this.abandonAttempts(end);
        this.lost.delete(end);
        this.ctx.timeOut(end, `not resumed within ${l.limitMs} ms`);
        continue;
      }
      if (now < l.next || this.attemptOf(end) || !this.ctx.portActive(end)) continue;
      l.next = now + RETRY_MS;
      this.start(end);
    }
  }

  private attemptOf(end: VerbsEndpoint): Attempt | undefined {
    for (const a of this.attempts.values()) if (a.end === end) return a;
    return undefined;
  }

  private start(end: VerbsEndpoint): void {
    const fabric = this.ctx.fabric();
    const target = isLocalAddress(end.remote!.address) ? this.ctx.rdmaAddress() : end.remote!.address;
    if (!fabric || !target) return;
    let handle: number;
    try {
      handle = fabric.resolve({ address: target, port: this.config.rdmaPort }, ATTEMPT_MS);
    } catch (err) {
      this.log.debug('resume: cannot resolve the peer', { error: String(err) });
      return;
    }
    this.track(handle, { end, initiator: true, old: end.handle, adopted: false, generation: (end.generation + 1) & 0xffff });
  }

  private track(handle: number, a: Omit<Attempt, 'timer'>): void {
    const timer = setTimeout(() => this.failed(handle, 'timed out'), ATTEMPT_MS);
    timer.unref();
    this.attempts.set(handle, { ...a, timer });
  }

  onCmEvent(ev: CmEvent): void {
    const a = this.attempts.get(ev.handle);
    if (!a) return;
    try {
      this.step(ev, a);
    } catch (err) {
      this.failed(ev.handle, String(err));
    }
  }

  private step(ev: CmEvent, a: Attempt): void {
    const fabric = this.ctx.fabric()!;
    const end = a.end;
    switch (ev.type) {
      case 'ADDRESS_RESOLVED':
        return fabric.resolveRoute(ev.handle, ATTEMPT_MS);
      case 'ROUTE_RESOLVED': {
        this.adopt(ev.handle, a);
        const req = encodeResumeReq({ ...fabric.position(ev.handle), generation: a.generation, token: end.token!,
          side: end.side, mac: Buffer.alloc(16) });
        resumeReqMac(this.auth.key, req.subarray(0, RESUME_MAC_AT)).copy(req, RESUME_MAC_AT);
        a.req = req;
        return fabric.connect(ev.handle, req);
      }
      case 'CONNECT_RESPONSE': {
        const rep = decodeResumeRep(ev.privateData);
        if (rep.generation !== a.generation
          || !macEqual(rep.mac, resumeRepMac(this.auth.key, a.req!, ev.privateData.subarray(0, RESUME_MAC_AT)))) {
          throw new Error('the resume REP does not prove the cluster key');
        }
        fabric.modifyQp(ev.handle, 'RTR');
        end.qpStep('to_rtr');
        fabric.modifyQp(ev.handle, 'RTS');
        end.qpStep('to_rts');
        fabric.establish(ev.handle);
        if (!this.resumeOrReset(ev.handle, a, rep, { send: rtuMac(this.auth.key, rep.nonce, a.req!) })) return;
        fabric.destroy(a.old); // its DREQ reaches an id the peer has let go of
        return this.done(ev.handle, a);
      }
      case 'CONNECT_ESTABLISHED':
        if (a.initiator) return;
        fabric.modifyQp(ev.handle, 'RTS');
        end.qpStep('to_rts');
        if (!this.resumeOrReset(ev.handle, a, a.peer!, { expect: a.expect! })) return;
        return this.done(ev.handle, a);
      case 'CONNECT_REJECTED': {
        // The peer's agent does not know the connection (restarted, or it ended there), or no
        // agent listens there any more: TCP's RST.  Other REJs are tried again: a host whose
        // link has just come back REJects for a moment (the CM's consumer reason, 28).
        const reason = decodeRej(ev.privateData);
        if (reason === ABI.fb.PEER_NOT_OFFLOADED || (reason === null && ev.status === IB_CM_REJ_INVALID_SERVICE_ID)) {
          const why = 'the peer no longer has the connection';
          this.failed(ev.handle, why);
          this.lost.delete(end);
          return this.ctx.reset(end, why);
        }
        return this.failed(ev.handle, `REJ (reason ${reason ?? `CM ${ev.status}`}): tried again`);
      }
      default:
        return this.failed(ev.handle, `${ev.type} (status ${ev.status})`);
    }
  }

  /** The data path goes on from the peer's position; one our stream never had is the peer's
   * protocol error (EPROTO), which ends the connection. */
  private resumeOrReset(handle: number, a: Attempt, peer: ResumePoint, auth: WireAuth): boolean {
    try {
      this.ctx.fabric()!.resume(handle, peer, auth);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code !== 'EPROTO') throw err;
      this.failed(handle, String(err));
      this.lost.delete(a.end);
      this.ctx.reset(a.end, String(err));
      return false;
    }
  }

  private adopt(handle: number, a: Attempt): void {
    const fabric = this.ctx.fabric()!;
    fabric.adopt(handle, a.end.handle);
    a.adopted = true;
    this.rekey(a.end, handle);
    a.end.qpStep('to_reset');
    fabric.modifyQp(handle, 'INIT'); // posts the receives
    a.end.qpStep('to_init');
  }

  private rekey(end: VerbsEndpoint, handle: number): void {
    this.ctx.ends.delete(end.handle);
    end.handle = handle;
    this.ctx.ends.set(handle, end);
  }

  private done(handle: number, a: Attempt): void {
    clearTimeout(a.timer);
    this.attempts.delete(handle);
    const end = a.end;
    end.suspended = false;
    end.generation = a.generation;
    end.cmStep('resume');
    this.lost.delete(end);
    this.ctx.resumed();
    this.log.warn('a verbs connection resumed on a new QP', { cid: end.cid.toString(), generation: a.generation });
  }

  /** An attempt that did not make it: the connection goes back to its id and waits for the next. */
  private failed(handle: number, why: string): void {
    const a = this.attempts.get(handle);
    if (!a) return;
    clearTimeout(a.timer);
    this.attempts.delete(handle);
    const fabric = this.ctx.fabric();
    this.log.debug('resume attempt failed', { cid: a.end.cid.toString(), why });
    if (a.initiator && a.adopted && fabric && !a.end.destroyed) {
      try {
        fabric.adopt(a.old, handle); // on a fresh QP, in RESET
        this.rekey(a.end, a.old);
        if (a.end.qp !== 'RESET') a.end.qpStep('to_reset');
      } catch (err) {
        this.log.debug('resume: cannot move the connection back', { error: String(err) });
      }
    }
    if (a.end.handle !== handle) fabric?.destroy(handle);
    // A responder whose peer went quiet waits, suspended, like any lost connection.
    if (!a.end.destroyed && !a.end.reset && !this.lost.has(a.end)) {
      this.lost.set(a.end, { since: Date.now(), limitMs: this.config.peerTimeoutMs, next: 0 });
    }
  }

  private abandonAttempts(end: VerbsEndpoint): void {
    for (const [h, a] of [...this.attempts]) if (a.end === end) this.failed(h, 'given up');
  }

  /**
   * A resume REQ (verbs-wire.ts) from the peer's agent: find the connection by its token, check
   * the proof and the generation, and answer on a new QP (or REJ).
   */
  onRequest(ev: CmEvent, req: ResumeReqData): void {
    const fabric = this.ctx.fabric()!;
    const reject = (reason: number, why: string): void => this.ctx.refuse(ev.handle, reason, `resume: ${why}`);
    const reqBytes = ev.privateData.subarray(0, RESUME_MAC_AT + 16);
    if (!macEqual(req.mac, resumeReqMac(this.auth.key, reqBytes.subarray(0, RESUME_MAC_AT)))) {
      return reject(ABI.fb.NO_FABRIC, 'the resume REQ does not prove the cluster key');
    }
    let end: VerbsEndpoint | undefined;
    for (const e of this.ctx.ends.values()) {
      if (e.token && e.side !== req.side && !e.destroyed && macEqual(e.token, req.token)) end = e;
    }
    if (!end || end.reset || end.cm !== 'ESTABLISHED') return reject(ABI.fb.PEER_NOT_OFFLOADED, 'no such connection');
    if (req.generation !== ((end.generation + 1) & 0xffff)) return reject(ABI.fb.RESOURCES, 'a stale resume REQ');
    const mine = this.attemptOf(end);
    if (mine) {
      if (end.side === 0 && mine.initiator) return reject(ABI.fb.RESOURCES, 'both sides resume: ours goes first');
      for (const [h, a] of [...this.attempts]) if (a === mine) this.failed(h, 'the peer resumes it');
    }
    if (!end.suspended) this.suspended(end, 'the peer resumes it on a new QP', 0, this.config.peerTimeoutMs, true);
    const old = end.handle;
    this.track(ev.handle, { end, initiator: false, old, adopted: false, generation: req.generation });
    const a = this.attempts.get(ev.handle)!;
    try {
      this.adopt(ev.handle, a);
      fabric.destroy(old);
      fabric.modifyQp(ev.handle, 'RTR');
      end.qpStep('to_rtr');
      const nonce = newNonce();
      const rep = encodeResumeRep({ ...fabric.position(ev.handle), generation: req.generation, nonce, mac: Buffer.alloc(16) });
      resumeRepMac(this.auth.key, reqBytes, rep.subarray(0, RESUME_MAC_AT)).copy(rep, RESUME_MAC_AT);
      a.peer = req;
      a.expect = rtuMac(this.auth.key, nonce, reqBytes);
      fabric.accept(ev.handle, rep);
    } catch (err) {
      this.failed(ev.handle, String(err));
    }
  }

  close(): void {
    for (const a of this.attempts.values()) clearTimeout(a.timer);
    this.attempts.clear();
    this.lost.clear();
  }
}
