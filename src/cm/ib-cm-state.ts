// IB CM state of a shadow connection endpoint (per CID): the REQ/REP/RTU open and DREQ/DREP close
// that every fabric runs, with REJECTED and ERROR as the exits that `reset` returns to IDLE.
import { Machine, totalErrors, type MachineSpec, type TransitionTable } from './machine.js';

export const IB_CM_STATES = [
  'IDLE', 'REQ_SENT', 'REQ_RCVD', 'REP_SENT', 'REP_RCVD', 'ESTABLISHED', 'DREQ_SENT', 'DREQ_RCVD',
  'TIMEWAIT', 'REJECTED', 'ERROR',
] as const;
export type IbCmState = (typeof IB_CM_STATES)[number];

export const IB_CM_EVENTS = [
  'send_req', 'rcv_req', 'send_rep', 'rcv_rep', 'send_rtu', 'rcv_rtu', 'send_rej', 'rcv_rej',
  'send_dreq', 'rcv_dreq', 'send_drep', 'rcv_drep', 'timeout', 'timewait_done', 'conn_error',
  'device_removal', 'reset',
  // A new REQ/REP/RTU on a new QP took over from one that failed (a link flap): the connection
  // stays established, its streams resumed from what each side has.
  'resume',
] as const;
export type IbCmEvent = (typeof IB_CM_EVENTS)[number];

// Losing the device ends the endpoint wherever it is, except where nothing is bound yet.
const GONE = { device_removal: 'ERROR' } as const;
// A connection error ends any endpoint that has a handshake or connection in flight.
const FAIL = { conn_error: 'ERROR', ...GONE } as const;

const transitions: TransitionTable<IbCmState, IbCmEvent> = {
  IDLE: { send_req: 'REQ_SENT', rcv_req: 'REQ_RCVD' },
  REQ_SENT: { rcv_rep: 'REP_RCVD', rcv_rej: 'REJECTED', timeout: 'ERROR', ...FAIL },
  REQ_RCVD: { send_rep: 'REP_SENT', send_rej: 'REJECTED', ...FAIL },
  REP_SENT: { rcv_rtu: 'ESTABLISHED', rcv_rej: 'REJECTED', timeout: 'ERROR', ...FAIL },
  REP_RCVD: { send_rtu: 'ESTABLISHED', send_rej: 'REJECTED', ...FAIL },
  ESTABLISHED: { send_dreq: 'DREQ_SENT', rcv_dreq: 'DREQ_RCVD', resume: 'ESTABLISHED', ...FAIL },
  DREQ_SENT: { rcv_drep: 'TIMEWAIT', rcv_dreq: 'TIMEWAIT', timeout: 'TIMEWAIT', ...FAIL },
  DREQ_RCVD: { send_drep: 'TIMEWAIT', ...FAIL },
  TIMEWAIT: { timewait_done: 'IDLE', ...GONE },
  REJECTED: { reset: 'IDLE', ...GONE },
  ERROR: { reset: 'IDLE', ...GONE },
};

const EXITS = ['REJECTED', 'ERROR'] as const;
const OPENING = ['REQ_SENT', 'REQ_RCVD', 'REP_SENT', 'REP_RCVD'] as const;

export const ibCmSpec: MachineSpec<IbCmState, IbCmEvent> = {
  name: 'ib_cm',
  title: 'IB CM state of the shadow connection (per CID)',
  states: IB_CM_STATES,
  events: IB_CM_EVENTS,
  initial: 'IDLE',
  transitions,
  errors: totalErrors(IB_CM_STATES, IB_CM_EVENTS, transitions, [
    { states: ['IDLE'], events: ['device_removal'], reason: 'an idle endpoint holds no device' },
    { states: ['IDLE', 'TIMEWAIT', ...EXITS], events: ['conn_error'], reason: 'no connection is in flight to fail' },
    { states: EXITS, events: '*', reason: 'endpoint has exited; reset it to IDLE first' },
    { states: '*', events: ['reset'], reason: 'reset only leaves REJECTED or ERROR' },
    { states: '*', events: ['send_req'], reason: 'a REQ needs an idle endpoint' },
    { states: '*', events: ['rcv_req'], reason: 'REQ for an endpoint that is not idle (duplicate or stray)' },
    { states: '*', events: ['send_rep'], reason: 'REP answers only a received REQ' },
    { states: '*', events: ['rcv_rep'], reason: 'REP without an outstanding REQ' },
    { states: '*', events: ['send_rtu'], reason: 'RTU answers only a received REP' },
    { states: '*', events: ['rcv_rtu'], reason: 'RTU without a REP sent' },
    { states: '*', events: ['send_rej'], reason: 'REJ can refuse only a REQ or REP that was received' },
    { states: '*', events: ['rcv_rej'], reason: 'REJ without a REQ or REP outstanding' },
    { states: [...OPENING, 'IDLE'], events: ['send_dreq', 'rcv_dreq'], reason: 'the connection is not established' },
    { states: '*', events: ['send_dreq'], reason: 'disconnect already under way' },
    { states: '*', events: ['rcv_dreq'], reason: 'DREQ for a connection that is already disconnecting' },
    { states: '*', events: ['send_drep'], reason: 'DREP answers only a received DREQ' },
    { states: '*', events: ['rcv_drep'], reason: 'DREP without a DREQ sent' },
    { states: '*', events: ['timeout'], reason: 'no CM timer runs in this state' },
    { states: '*', events: ['timewait_done'], reason: 'the TIMEWAIT timer runs only in TIMEWAIT' },
    { states: '*', events: ['resume'], reason: 'only an established connection is resumed' },
  ]),
};

export const ibCmMachine = new Machine(ibCmSpec);
