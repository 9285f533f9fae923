// One end of a verbs-fabric connection, as this agent sees it.  Unlike the shm fabric, where
// the agent plays both host CAs of a connection, here each agent holds only its own end: the
// peer's states live in the peer's agent (possibly this same agent, when the verbs fabric is
// forced on one host).  Every change goes through the transition tables and the event log.
import {
  ibCmMachine, qpMachine, tcpMachine,
  type IbCmEvent, type IbCmState, type QpEvent, type QpState, type TcpEvent, type TcpState,
} from '../cm/index.js';
import type { SockAddr } from '../native.js';
import type { EventLog } from './event-log.js';
import type { Side } from './shadow-connection.js';

export class VerbsEndpoint {
  tcp: TcpState = tcpMachine.initial;
  cm: IbCmState = ibCmMachine.initial;
  qp: QpState = qpMachine.initial;
  /** our FIN is on the wire (before the peer's: we are the first closer and send the DREQ) */
  finSent = false;
  firstCloser = false;
  peerFin = false;
  /** the peer's process closed the socket: a write from ours now meets a reset, as in TCP */
  peerClosed = false;
  reset = false; // either side aborted
  /** the process holds the descriptors (REP replied, or ACCEPT answered) */
  handedOut = false;
  destroyed = false;
  pid = 0;
  program = '?';
  /** bytes of the pinned-memory budget this end holds (its rings and mailbox), until destroyed */
  pinned = 0;
  /** names the connection to the peer's agent for a resume: the first REP's nonce */
  token: Buffer | null = null;
  /** resumes so far */
  generation = 0;
  /** the QP failed or stuck: the data path waits for a resume (verbs-resume.ts) */
  suspended = false;
  timer?: NodeJS.Timeout;
  /**
   * Active end: the client's kernel rendezvous socket, held until the server's process claims
   * the passive end; if a process takes the connection on kernel TCP instead (late fallback),
   * the stream goes on over it.
   */
  rendezvousFd?: number;
  /** Active end: its stream is relayed over that socket, the QP gone. */
  relayed = false;
  /** Passive end: a process took the connection on kernel TCP; its client's agent carries it. */
  kernelAccepted = false;

  constructor(
    readonly cid: bigint,
    readonly side: Side,
    public handle: number,
    public sid: number | null,
    public local: SockAddr | null,
    public remote: SockAddr | null,
    private readonly log: EventLog,
  ) {}

  get established(): boolean {
    return this.cm === 'ESTABLISHED';
  }

  get disconnecting(): boolean {
    return this.cm === 'DREQ_SENT' || this.cm === 'DREQ_RCVD' || this.cm === 'TIMEWAIT' || this.cm === 'IDLE'
      || this.cm === 'ERROR' || this.cm === 'REJECTED';
  }

  tcpStep(event: TcpEvent): void {
    const from = this.tcp;
    if (tcpMachine.outcome(from, event).kind !== 'transition') return; // e.g. RST after a clean close
    this.tcp = tcpMachine.next(from, event);
    this.record('tcp', from, event, this.tcp);
  }

  cmStep(event: IbCmEvent): void {
    const from = this.cm;
    this.cm = ibCmMachine.next(from, event);
    this.record('ib_cm', from, event, this.cm);
  }

  qpStep(event: QpEvent): void {
    const from = this.qp;
    this.qp = qpMachine.next(from, event);
    this.record('qp', from, event, this.qp);
  }

  private record(machine: 'tcp' | 'ib_cm' | 'qp', from: string, event: string, to: string): void {
    this.log.record({ cid: this.cid.toString(), side: this.side, sid: this.sid, machine, from, event, to });
  }
}
