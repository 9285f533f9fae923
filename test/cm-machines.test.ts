import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  allMachines, ibCmMachine, Machine, qpMachine, tcpMachine, toDot, totalErrors, TransitionError,
  type MachineSpec,
} from '../src/cm/index.js';

// The required transitions, written out by hand: the machines must have exactly these.
const TCP_SYNC = ['ESTABLISHED', 'FIN_WAIT1', 'FIN_WAIT2', 'CLOSING', 'CLOSE_WAIT', 'LAST_ACK'];
const EXPECTED: Record<string, Array<[string, string, string]>> = {
  tcp: [
    ['CLOSED', 'app_listen', 'LISTEN'],
    ['CLOSED', 'app_connect', 'SYN_SENT'],
    ['CLOSED', 'rcv_syn', 'SYN_RCVD'],
    ['LISTEN', 'rcv_syn', 'LISTEN'],
    ['LISTEN', 'app_close', 'CLOSED'],
    ['SYN_SENT', 'rcv_synack', 'ESTABLISHED'],
    ['SYN_SENT', 'rcv_rst', 'CLOSED'],
    ['SYN_SENT', 'app_close', 'CLOSED'],
    ['SYN_SENT', 'app_abort', 'CLOSED'],
    ['SYN_SENT', 'timeout_rto', 'CLOSED'],
    ['SYN_RCVD', 'rcv_ack', 'ESTABLISHED'],
    ['SYN_RCVD', 'app_close', 'FIN_WAIT1'],
    ['SYN_RCVD', 'rcv_rst', 'CLOSED'],
    ['SYN_RCVD', 'app_abort', 'CLOSED'],
    ['SYN_RCVD', 'timeout_rto', 'CLOSED'],
    ['ESTABLISHED', 'app_close', 'FIN_WAIT1'],
    ['ESTABLISHED', 'rcv_fin', 'CLOSE_WAIT'],
    ['FIN_WAIT1', 'rcv_fin_ack', 'FIN_WAIT2'],
    ['FIN_WAIT1', 'rcv_fin', 'CLOSING'],
    ['FIN_WAIT2', 'rcv_fin', 'TIME_WAIT'],
    ['CLOSING', 'rcv_fin_ack', 'TIME_WAIT'],
    ['TIME_WAIT', 'timeout_2msl', 'CLOSED'],
    ['TIME_WAIT', 'rcv_rst', 'CLOSED'],
    ['CLOSE_WAIT', 'app_close', 'LAST_ACK'],
    ['LAST_ACK', 'rcv_fin_ack', 'CLOSED'],
    ...TCP_SYNC.flatMap((s): Array<[string, string, string]> =>
      [[s, 'rcv_rst', 'CLOSED'], [s, 'app_abort', 'CLOSED'], [s, 'timeout_rto', 'CLOSED']]),
  ],
  ib_cm: [
    ['IDLE', 'send_req', 'REQ_SENT'],
    ['IDLE', 'rcv_req', 'REQ_RCVD'],
    ['REQ_SENT', 'rcv_rep', 'REP_RCVD'],
    ['REQ_SENT', 'rcv_rej', 'REJECTED'],
    ['REQ_SENT', 'timeout', 'ERROR'],
    ['REQ_RCVD', 'send_rep', 'REP_SENT'],
    ['REQ_RCVD', 'send_rej', 'REJECTED'],
    ['REP_SENT', 'rcv_rtu', 'ESTABLISHED'],
    ['REP_SENT', 'rcv_rej', 'REJECTED'],
    ['REP_SENT', 'timeout', 'ERROR'],
    ['REP_RCVD', 'send_rtu', 'ESTABLISHED'],
    ['REP_RCVD', 'send_rej', 'REJECTED'],
    ['ESTABLISHED', 'send_dreq', 'DREQ_SENT'],
    ['ESTABLISHED', 'rcv_dreq', 'DREQ_RCVD'],
    ['ESTABLISHED', 'resume', 'ESTABLISHED'],
    ['DREQ_SENT', 'rcv_drep', 'TIMEWAIT'],
    ['DREQ_SENT', 'rcv_dreq', 'TIMEWAIT'],
    ['DREQ_SENT', 'timeout', 'TIMEWAIT'],
    ['DREQ_RCVD', 'send_drep', 'TIMEWAIT'],
    ['TIMEWAIT', 'timewait_done', 'IDLE'],
    ['REJECTED', 'reset', 'IDLE'],
    ['ERROR', 'reset', 'IDLE'],
    ...['REQ_SENT', 'REQ_RCVD', 'REP_SENT', 'REP_RCVD', 'ESTABLISHED', 'DREQ_SENT', 'DREQ_RCVD']
      .map((s): [string, string, string] => [s, 'conn_error', 'ERROR']),
    ...['REQ_SENT', 'REQ_RCVD', 'REP_SENT', 'REP_RCVD', 'ESTABLISHED', 'DREQ_SENT', 'DREQ_RCVD', 'TIMEWAIT',
      'REJECTED', 'ERROR'].map((s): [string, string, string] => [s, 'device_removal', 'ERROR']),
  ],
  qp: [
    ['RESET', 'to_init', 'INIT'],
    ['INIT', 'to_init', 'INIT'],
    ['INIT', 'to_rtr', 'RTR'],
    ['RTR', 'to_rts', 'RTS'],
    ['RTS', 'to_rts', 'RTS'],
    ['RTS', 'to_sqd', 'SQD'],
    ['SQD', 'to_rts', 'RTS'],
    ['SQD', 'to_sqd', 'SQD'],
    ['RTS', 'to_sqe', 'SQE'],
    ['SQE', 'to_rts', 'RTS'],
    ...['INIT', 'RTR', 'RTS', 'SQD', 'SQE', 'ERR'].map((s): [string, string, string] => [s, 'to_err', 'ERR']),
    ...['RESET', 'INIT', 'RTR', 'RTS', 'SQD', 'SQE', 'ERR'].map((s): [string, string, string] => [s, 'to_reset', 'RESET']),
  ],
};

const STATES: Record<string, string[]> = {
  tcp: ['CLOSED', 'LISTEN', 'SYN_SENT', 'SYN_RCVD', 'ESTABLISHED', 'FIN_WAIT1', 'FIN_WAIT2', 'CLOSING',
    'TIME_WAIT', 'CLOSE_WAIT', 'LAST_ACK'],
  ib_cm: ['IDLE', 'REQ_SENT', 'REQ_RCVD', 'REP_SENT', 'REP_RCVD', 'ESTABLISHED', 'DREQ_SENT', 'DREQ_RCVD',
    'TIMEWAIT', 'REJECTED', 'ERROR'],
  qp: ['RESET', 'INIT', 'RTR', 'RTS', 'SQD', 'SQE', 'ERR'],
};
const INITIAL: Record<string, string> = { tcp: 'CLOSED', ib_cm: 'IDLE', qp: 'RESET' };

describe.each(allMachines.map((m) => [m.spec.name, m] as const))('machine %s', (name, m) => {
  it('has the fixed states and initial state', () => {
    expect([...m.spec.states]).toEqual(STATES[name]);
    expect(m.initial).toBe(INITIAL[name]);
  });

  it('is total: every state × event pair is a transition or an error', () => {
    const pairs = m.pairs();
    expect(pairs).toHaveLength(m.spec.states.length * m.spec.events.length);
    for (const { state, event, outcome } of pairs) {
      expect(outcome).toBeDefined();
      expect(m.outcome(state, event)).toEqual(outcome);
      if (outcome.kind === 'transition') {
        expect(m.spec.states).toContain(outcome.to);
        expect(m.next(state, event)).toBe(outcome.to);
      } else {
        expect(outcome.reason.length).toBeGreaterThan(0);
        let caught: unknown;
        try {
          m.next(state, event);
        } catch (err) {
          caught = err;
        }
        expect(caught).toBeInstanceOf(TransitionError);
        const te = caught as TransitionError;
        expect(te.code).toBe('EPROTO');
        expect(te.machine).toBe(name);
        expect(te.state).toBe(state);
        expect(te.event).toBe(event);
        expect(te.message).toContain(outcome.reason);
      }
    }
  });

  it('has exactly the required transitions', () => {
    const actual = m.pairs()
      .filter((p) => p.outcome.kind === 'transition')
      .map((p) => `${p.state} -${p.event}-> ${(p.outcome as { to: string }).to}`)
      .sort();
    const expected = EXPECTED[name]!.map(([s, e, t]) => `${s} -${e}-> ${t}`).sort();
    expect(actual).toEqual(expected);
  });

  it('reaches every state from the initial state', () => {
    expect([...m.reachable()].sort()).toEqual([...m.spec.states].sort());
  });
});

describe('specific error reasons', () => {
  it('names the important refusals', () => {
    for (const e of ['app_close', 'rcv_fin', 'rcv_rst', 'app_abort'] as const) {
      expect(tcpMachine.outcome('CLOSED', e)).toEqual({ kind: 'error', reason: 'socket is not connected' });
    }
    expect(() => tcpMachine.next('ESTABLISHED', 'app_connect')).toThrow(/already connected/);
    expect(() => tcpMachine.next('FIN_WAIT2', 'app_close')).toThrow(/already sent its FIN/);
    expect(() => ibCmMachine.next('ESTABLISHED', 'rcv_rep')).toThrow(/REP without an outstanding REQ/);
    expect(() => ibCmMachine.next('ERROR', 'send_req')).toThrow(/reset it to IDLE/);
    expect(() => qpMachine.next('ERR', 'to_rts')).toThrow(/reset first/);
  });
});

describe('lifecycles', () => {
  const walk = <S extends string, E extends string>(m: Machine<S, E>, events: E[]): S[] => {
    const seen: S[] = [m.initial];
    for (const e of events) seen.push(m.next(seen[seen.length - 1]!, e));
    return seen;
  };

  it('TCP active open and active close', () => {
    expect(walk(tcpMachine, ['app_connect', 'rcv_synack', 'app_close', 'rcv_fin_ack', 'rcv_fin', 'timeout_2msl']))
      .toEqual(['CLOSED', 'SYN_SENT', 'ESTABLISHED', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSED']);
  });

  it('TCP passive open (listener and accepted child) and passive close', () => {
    expect(walk(tcpMachine, ['app_listen', 'rcv_syn', 'rcv_syn', 'app_close']))
      .toEqual(['CLOSED', 'LISTEN', 'LISTEN', 'LISTEN', 'CLOSED']);
    expect(walk(tcpMachine, ['rcv_syn', 'rcv_ack', 'rcv_fin', 'app_close', 'rcv_fin_ack']))
      .toEqual(['CLOSED', 'SYN_RCVD', 'ESTABLISHED', 'CLOSE_WAIT', 'LAST_ACK', 'CLOSED']);
  });

  it('TCP simultaneous close', () => {
    expect(walk(tcpMachine, ['app_connect', 'rcv_synack', 'app_close', 'rcv_fin', 'rcv_fin_ack', 'timeout_2msl']))
      .toEqual(['CLOSED', 'SYN_SENT', 'ESTABLISHED', 'FIN_WAIT1', 'CLOSING', 'TIME_WAIT', 'CLOSED']);
  });

  it('TCP reset from ESTABLISHED', () => {
    expect(walk(tcpMachine, ['app_connect', 'rcv_synack', 'rcv_rst']))
      .toEqual(['CLOSED', 'SYN_SENT', 'ESTABLISHED', 'CLOSED']);
  });

  it('CM active side: REQ, REP, RTU, DREQ, DREP, timewait', () => {
    expect(walk(ibCmMachine, ['send_req', 'rcv_rep', 'send_rtu', 'send_dreq', 'rcv_drep', 'timewait_done']))
      .toEqual(['IDLE', 'REQ_SENT', 'REP_RCVD', 'ESTABLISHED', 'DREQ_SENT', 'TIMEWAIT', 'IDLE']);
  });

  it('CM passive side', () => {
    expect(walk(ibCmMachine, ['rcv_req', 'send_rep', 'rcv_rtu', 'rcv_dreq', 'send_drep']))
      .toEqual(['IDLE', 'REQ_RCVD', 'REP_SENT', 'ESTABLISHED', 'DREQ_RCVD', 'TIMEWAIT']);
  });

  it('CM rejection exits and resets', () => {
    expect(walk(ibCmMachine, ['send_req', 'rcv_rej', 'reset'])).toEqual(['IDLE', 'REQ_SENT', 'REJECTED', 'IDLE']);
  });

  it('QP bring-up, error and reset', () => {
    expect(walk(qpMachine, ['to_init', 'to_rtr', 'to_rts', 'to_err', 'to_reset']))
      .toEqual(['RESET', 'INIT', 'RTR', 'RTS', 'ERR', 'RESET']);
  });
});

describe('Machine constructor validation', () => {
  type S = 'A' | 'B';
  type E = 'x' | 'y';
  const base = (): MachineSpec<S, E> => ({
    name: 't', title: 'test', states: ['A', 'B'], events: ['x', 'y'], initial: 'A',
    transitions: { A: { x: 'B' }, B: { y: 'A' } },
    errors: { A: { y: 'no' }, B: { x: 'no' } },
  });

  it('accepts a total spec', () => {
    expect(new Machine(base()).next('A', 'x')).toBe('B');
  });

  it('rejects a missing pair', () => {
    expect(() => new Machine({ ...base(), errors: { A: { y: 'no' } } })).toThrow(/B\/x is neither/);
  });

  it('rejects an overlapping pair', () => {
    expect(() => new Machine({ ...base(), errors: { A: { x: 'no', y: 'no' }, B: { x: 'no' } } }))
      .toThrow(/A\/x is both/);
  });

  it('rejects an unknown target, state, event or initial', () => {
    expect(() => new Machine({ ...base(), transitions: { A: { x: 'C' as S }, B: { y: 'A' } } })).toThrow(/unknown state C/);
    expect(() => new Machine({ ...base(), transitions: { ...base().transitions, ['Z' as S]: {} } })).toThrow(/unknown state Z/);
    expect(() => new Machine({ ...base(), errors: { A: { y: 'no', ['q' as E]: 'no' }, B: { x: 'no' } } }))
      .toThrow(/unknown event q/);
    expect(() => new Machine({ ...base(), initial: 'Q' as S })).toThrow(/initial state Q/);
  });

  it('rejects an empty reason and duplicate names', () => {
    expect(() => new Machine({ ...base(), errors: { A: { y: '' }, B: { x: 'no' } } })).toThrow(/empty reason/);
    expect(() => new Machine({ ...base(), states: ['A', 'B', 'A'] })).toThrow(/duplicate state/);
  });

  it('totalErrors fills the gaps with the first matching rule or a generic reason', () => {
    const t = { A: { x: 'B' } } as const;
    const errors = totalErrors<S, E>(['A', 'B'], ['x', 'y'], t, [{ states: ['B'], events: '*', reason: 'B is final' }]);
    expect(errors).toEqual({ A: { y: 'y is not valid in A' }, B: { x: 'B is final', y: 'B is final' } });
    expect(new Machine({ ...base(), transitions: t, errors }).outcome('B', 'y')).toEqual({ kind: 'error', reason: 'B is final' });
  });
});

describe('toDot', () => {
  const dot = toDot([...allMachines]);

  it('has a cluster per machine and an edge per transition', () => {
    expect(dot.startsWith('digraph vtoe_cm {')).toBe(true);
    expect(dot.trimEnd().endsWith('}')).toBe(true);
    for (const m of allMachines) {
      expect(dot).toContain(`subgraph cluster_${m.spec.name} {`);
      expect(dot).toContain(`label="${m.spec.title}"`);
      expect(dot).toContain(`${m.spec.name}_${m.initial} [label="${m.initial}", shape=doublecircle]`);
      for (const p of m.pairs()) {
        if (p.outcome.kind !== 'transition') continue;
        const re = new RegExp(`^ +${m.spec.name}_${p.state} -> ${m.spec.name}_${p.outcome.to} \\[label="([^"]*)"\\];$`, 'm');
        const match = re.exec(dot);
        expect(match, `${m.spec.name} ${p.state} -${p.event}->`).not.toBeNull();
        expect(match![1]!.split('\\n')).toContain(p.event);
      }
    }
  });

  it('merges parallel edges and is deterministic', () => {
    expect(dot).toContain('tcp_SYN_SENT -> tcp_CLOSED [label="app_close\\nrcv_rst\\napp_abort\\ntimeout_rto"];');
    const edges = dot.split('\n').filter((l) => l.includes('->'));
    const pairs = edges.map((l) => l.replace(/ \[.*$/, '').trim());
    expect(new Set(pairs).size).toBe(pairs.length);
    expect(toDot([...allMachines])).toBe(dot);
  });

  const hasDot = spawnSync('dot', ['-V']).status === 0;
  it.skipIf(!hasDot)('is accepted by Graphviz dot -Tsvg (skipped: dot is not on PATH)', () => {
    const r = spawnSync('dot', ['-Tsvg'], { input: dot, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('<svg');
  });
});
