// One shadow connection (CID) and its two endpoints. Every state change goes through the three
// transition tables of src/cm and is written to the agent's event log, so the sequence a
// connection traversed can be read back (REQ_SENT → REP_RCVD → ESTABLISHED, DREQ/DREP, ...).
import {
  ibCmMachine, qpMachine, tcpMachine,
  type IbCmEvent, type IbCmState, type QpEvent, type QpState, type TcpEvent, type TcpState,
} from '../cm/index.js';
import type { EventLog } from './event-log.js';

export type Side = 0 | 1; // 0 = active (connecting) end, 1 = passive (accepted) end
export type Fabric = 'shm';

export interface Endpoint {
  sid: number | null; // null while the passive end waits in the accept queue
  tcp: TcpState;
  cm: IbCmState;
  qp: QpState;
  finSent: boolean;
  closed: boolean;
}

type MachineName = 'tcp' | 'ib_cm' | 'qp';

function freshEndpoint(sid: number | null): Endpoint {
  return {
    sid, tcp: tcpMachine.initial, cm: ibCmMachine.initial, qp: qpMachine.initial,
    finSent: false, closed: false,
  };
}

export class ShadowConnection {
  readonly ends: [Endpoint, Endpoint];
  /** The side whose FIN or reset came first: it sends the DREQ. */
  private firstCloser: Side | null = null;
  /** cid as the event log names it, made once (a record per transition). */
  private readonly cidText: string;
  private disconnected = false;

  constructor(
    readonly cid: bigint,
    readonly fabric: Fabric,
    activeSid: number,
    private readonly log: EventLog,
  ) {
    this.ends = [freshEndpoint(activeSid), freshEndpoint(null)];
    this.cidText = cid.toString();
  }

  get established(): boolean {
    return this.ends[0].cm === 'ESTABLISHED' && this.ends[1].cm === 'ESTABLISHED';
  }

  get finished(): boolean {
    return this.ends.every((e) => e.cm === 'IDLE' && e.qp === 'RESET') && this.disconnected;
  }

  /** REQ from the active end, REP from the passive end (the agent plays both CAs on shm). */
  requestAndReply(): void {
    this.tcp(0, 'app_connect');
    this.cm(0, 'send_req');
    this.qp(0, 'to_init');
    this.qp(0, 'to_rtr');
    this.cm(1, 'rcv_req');
    this.tcp(1, 'rcv_syn');
    this.qp(1, 'to_init');
    this.qp(1, 'to_rtr');
    this.cm(1, 'send_rep');
    this.cm(0, 'rcv_rep');
  }

  /** RTU: the active end's kernel rendezvous succeeded. */
  readyToUse(): void {
    this.qp(0, 'to_rts');
    this.cm(0, 'send_rtu');
    this.tcp(0, 'rcv_synack');
    this.cm(1, 'rcv_rtu');
    this.qp(1, 'to_rts');
    this.tcp(1, 'rcv_ack');
  }

  /** The active end gave up before RTU: REJ, both ends back to IDLE. */
  reject(): void {
    this.cm(0, 'send_rej');
    this.cm(1, 'rcv_rej');
    this.tcp(0, 'app_abort');
    this.tcp(1, 'rcv_rst');
    for (const side of [0, 1] as const) {
      this.qp(side, 'to_err');
      this.cm(side, 'reset');
      this.qp(side, 'to_reset');
      this.ends[side].finSent = true;
    }
    this.disconnected = true;
  }

  /** An in-band FIN from `side` reached the peer (the shared ring delivers it, so it is acked). */
  fin(side: Side): void {
    const me = this.ends[side];
    if (me.finSent || !this.established) return;
    me.finSent = true;
    this.firstCloser ??= side;
    const peer = (1 - side) as Side;
    this.tcp(side, 'app_close');
    this.tcp(peer, 'rcv_fin');
    this.tcp(side, 'rcv_fin_ack');
    if (this.ends[peer].finSent) this.disconnect();
  }

  /** Linger-0 close, unread data at close, or a reset: the peer sees ECONNRESET. */
  reset(side: Side): void {
    if (!this.established || this.disconnected) return;
    const peer = (1 - side) as Side;
    this.firstCloser ??= side;
    if (this.ends[side].tcp !== 'CLOSED') this.tcp(side, 'app_abort');
    if (this.ends[peer].tcp !== 'CLOSED' && this.ends[peer].tcp !== 'TIME_WAIT') this.tcp(peer, 'rcv_rst');
    this.ends[side].finSent = true;
    this.ends[peer].finSent = true;
    this.disconnect();
  }

  /** After the TIMEWAIT period: CM back to IDLE, QPs reset, TCP TIME_WAIT expires. */
  timewaitDone(): void {
    for (const side of [0, 1] as const) {
      if (this.ends[side].cm === 'TIMEWAIT') this.cm(side, 'timewait_done');
      if (this.ends[side].qp !== 'RESET') this.qp(side, 'to_reset');
      if (this.ends[side].tcp === 'TIME_WAIT') this.tcp(side, 'timeout_2msl');
    }
  }

  get inTimewait(): boolean {
    return this.disconnected && this.ends.some((e) => e.cm === 'TIMEWAIT');
  }

  /** Both directions are done: DREQ from the first closer, DREP from the other, QPs to ERR. */
  private disconnect(): void {
    if (this.disconnected) return;
    this.disconnected = true;
    const first = this.firstCloser ?? 0;
    const other = (1 - first) as Side;
    this.cm(first, 'send_dreq');
    this.cm(other, 'rcv_dreq');
    this.cm(other, 'send_drep');
    this.cm(first, 'rcv_drep');
    this.qp(0, 'to_err');
    this.qp(1, 'to_err');
  }

  private tcp(side: Side, event: TcpEvent): void {
    const from = this.ends[side].tcp;
    this.ends[side].tcp = tcpMachine.next(from, event);
    this.record(side, 'tcp', from, event, this.ends[side].tcp);
  }

  private cm(side: Side, event: IbCmEvent): void {
    const from = this.ends[side].cm;
    this.ends[side].cm = ibCmMachine.next(from, event);
    this.record(side, 'ib_cm', from, event, this.ends[side].cm);
  }

  private qp(side: Side, event: QpEvent): void {
    const from = this.ends[side].qp;
    this.ends[side].qp = qpMachine.next(from, event);
    this.record(side, 'qp', from, event, this.ends[side].qp);
  }

  private record(side: Side, machine: MachineName, from: string, event: string, to: string): void {
    this.log.record({ cid: this.cidText, side, sid: this.ends[side].sid, machine, from, event, to });
  }
}
