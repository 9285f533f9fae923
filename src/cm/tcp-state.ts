// TCP state of a VTOE socket (per SID), as RFC 793 draws it, driven by the shim's calls and the
// in-band SYN/FIN/RST the fabric carries.
import { Machine, totalErrors, type MachineSpec, type TransitionTable } from './machine.js';

export const TCP_STATES = [
  'CLOSED', 'LISTEN', 'SYN_SENT', 'SYN_RCVD', 'ESTABLISHED', 'FIN_WAIT1', 'FIN_WAIT2',
  'CLOSING', 'TIME_WAIT', 'CLOSE_WAIT', 'LAST_ACK',
] as const;
export type TcpState = (typeof TCP_STATES)[number];

export const TCP_EVENTS = [
  'app_listen', 'app_connect', 'rcv_syn', 'rcv_synack', 'rcv_ack', 'app_close', 'rcv_fin',
  'rcv_fin_ack', 'timeout_2msl', 'rcv_rst', 'app_abort', 'timeout_rto',
] as const;
export type TcpEvent = (typeof TCP_EVENTS)[number];

// Reset, abort and a peer silent for longer than the retransmission (or keepalive or
// TCP_USER_TIMEOUT) limit end any connection that has exchanged SYNs.
const KILL = { rcv_rst: 'CLOSED', app_abort: 'CLOSED', timeout_rto: 'CLOSED' } as const;

const transitions: TransitionTable<TcpState, TcpEvent> = {
  CLOSED: { app_listen: 'LISTEN', app_connect: 'SYN_SENT', rcv_syn: 'SYN_RCVD' },
  LISTEN: { rcv_syn: 'LISTEN', app_close: 'CLOSED' },
  SYN_SENT: { rcv_synack: 'ESTABLISHED', rcv_rst: 'CLOSED', app_close: 'CLOSED', app_abort: 'CLOSED', timeout_rto: 'CLOSED' },
  SYN_RCVD: { rcv_ack: 'ESTABLISHED', app_close: 'FIN_WAIT1', ...KILL },
  ESTABLISHED: { app_close: 'FIN_WAIT1', rcv_fin: 'CLOSE_WAIT', ...KILL },
  FIN_WAIT1: { rcv_fin_ack: 'FIN_WAIT2', rcv_fin: 'CLOSING', ...KILL },
  FIN_WAIT2: { rcv_fin: 'TIME_WAIT', ...KILL },
  CLOSING: { rcv_fin_ack: 'TIME_WAIT', ...KILL },
  TIME_WAIT: { timeout_2msl: 'CLOSED', rcv_rst: 'CLOSED' },
  CLOSE_WAIT: { app_close: 'LAST_ACK', ...KILL },
  LAST_ACK: { rcv_fin_ack: 'CLOSED', ...KILL },
};

const CONNECTED = ['ESTABLISHED', 'FIN_WAIT1', 'FIN_WAIT2', 'CLOSING', 'TIME_WAIT', 'CLOSE_WAIT', 'LAST_ACK'] as const;
const FIN_SENT = ['FIN_WAIT1', 'FIN_WAIT2', 'CLOSING', 'TIME_WAIT', 'LAST_ACK'] as const;
const FIN_RECEIVED = ['CLOSING', 'TIME_WAIT', 'CLOSE_WAIT', 'LAST_ACK'] as const;

export const tcpSpec: MachineSpec<TcpState, TcpEvent> = {
  name: 'tcp',
  title: 'TCP state of the VTOE socket (per SID)',
  states: TCP_STATES,
  events: TCP_EVENTS,
  initial: 'CLOSED',
  transitions,
  errors: totalErrors(TCP_STATES, TCP_EVENTS, transitions, [
    { states: ['CLOSED'], events: ['rcv_synack', 'rcv_ack', 'app_close', 'rcv_fin', 'rcv_fin_ack', 'rcv_rst', 'app_abort', 'timeout_rto'],
      reason: 'socket is not connected' },
    { states: ['LISTEN'], events: ['app_listen'], reason: 'socket is already listening; a second listen() only changes the backlog' },
    { states: ['LISTEN'], events: ['app_connect'], reason: 'a listening socket cannot connect' },
    { states: ['LISTEN'], events: ['rcv_synack', 'rcv_ack', 'rcv_fin', 'rcv_fin_ack', 'rcv_rst', 'timeout_rto'],
      reason: 'a listening socket has no connection; segments go to its accepted children' },
    { states: ['LISTEN'], events: ['app_abort'], reason: 'a listening socket is closed with app_close' },
    { states: '*', events: ['app_listen'], reason: 'listen() needs an unconnected socket' },
    { states: ['SYN_SENT'], events: ['app_connect'], reason: 'a connection attempt is already in progress' },
    { states: ['SYN_RCVD', ...CONNECTED], events: ['app_connect'], reason: 'socket is already connected' },
    { states: ['SYN_SENT', 'SYN_RCVD', ...CONNECTED], events: ['rcv_syn'], reason: 'SYN on a connection that has one already' },
    { states: '*', events: ['rcv_synack'], reason: 'SYN-ACK without a SYN sent' },
    { states: ['SYN_SENT'], events: ['rcv_ack'], reason: 'ACK of a SYN that the peer has not answered' },
    { states: CONNECTED, events: ['rcv_ack'], reason: 'handshake ACK after the handshake finished' },
    { states: FIN_SENT, events: ['app_close'], reason: 'this side has already sent its FIN' },
    { states: ['SYN_SENT', 'SYN_RCVD'], events: ['rcv_fin'], reason: 'FIN before the connection is established' },
    { states: FIN_RECEIVED, events: ['rcv_fin'], reason: 'the peer has already sent its FIN' },
    { states: '*', events: ['rcv_fin_ack'], reason: 'no FIN of ours is waiting for its ACK' },
    { states: '*', events: ['timeout_2msl'], reason: 'the 2MSL timer runs only in TIME_WAIT' },
    { states: ['TIME_WAIT'], events: ['app_abort'], reason: 'the connection is already closed; TIME_WAIT only waits' },
    { states: ['TIME_WAIT'], events: ['timeout_rto'], reason: 'nothing waits for an acknowledgement in TIME_WAIT' },
  ]),
};

export const tcpMachine = new Machine(tcpSpec);
