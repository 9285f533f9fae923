// Queue pair state, after the InfiniBand spec's QP state diagram (vol. 1, 10.3.1): the modify-QP
// transitions a shadow connection's QP may take.
import { Machine, totalErrors, type MachineSpec, type TransitionTable } from './machine.js';

export const QP_STATES = ['RESET', 'INIT', 'RTR', 'RTS', 'SQD', 'SQE', 'ERR'] as const;
export type QpState = (typeof QP_STATES)[number];

export const QP_EVENTS = ['to_init', 'to_rtr', 'to_rts', 'to_sqd', 'to_sqe', 'to_err', 'to_reset'] as const;
export type QpEvent = (typeof QP_EVENTS)[number];

const transitions: TransitionTable<QpState, QpEvent> = {
  RESET: { to_init: 'INIT', to_reset: 'RESET' },
  INIT: { to_init: 'INIT', to_rtr: 'RTR', to_err: 'ERR', to_reset: 'RESET' },
  RTR: { to_rts: 'RTS', to_err: 'ERR', to_reset: 'RESET' },
  RTS: { to_rts: 'RTS', to_sqd: 'SQD', to_sqe: 'SQE', to_err: 'ERR', to_reset: 'RESET' },
  SQD: { to_rts: 'RTS', to_sqd: 'SQD', to_err: 'ERR', to_reset: 'RESET' },
  SQE: { to_rts: 'RTS', to_err: 'ERR', to_reset: 'RESET' },
  ERR: { to_err: 'ERR', to_reset: 'RESET' },
};

export const qpSpec: MachineSpec<QpState, QpEvent> = {
  name: 'qp',
  title: 'QP state',
  states: QP_STATES,
  events: QP_EVENTS,
  initial: 'RESET',
  transitions,
  errors: totalErrors(QP_STATES, QP_EVENTS, transitions, [
    { states: ['ERR'], events: '*', reason: 'a QP in ERR must be reset first' },
    { states: ['RESET'], events: ['to_err'], reason: 'a QP in RESET has no work to flush' },
    { states: '*', events: ['to_init'], reason: 'INIT is reached only from RESET' },
    { states: '*', events: ['to_rtr'], reason: 'RTR is reached only from INIT' },
    { states: '*', events: ['to_rts'], reason: 'RTS is reached only from RTR, SQD or SQE' },
    { states: '*', events: ['to_sqd'], reason: 'a send-queue drain starts only in RTS' },
    { states: '*', events: ['to_sqe'], reason: 'a send-queue error happens only in RTS' },
  ]),
};

export const qpMachine = new Machine(qpSpec);
