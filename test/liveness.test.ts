// src/agent/liveness.ts: when a verbs connection's silent peer is given up on, as Linux TCP does.
import { describe, expect, it } from 'vitest';
import { judgeLiveness, STUCK_SEND_MS, unackedLimitMs, WINDOW_PROBE_AFTER_MS } from '../src/agent/liveness.js';
import type { LivenessSample } from '../src/native-verbs.js';

const DEFAULT_MS = 924_600;
const quiet = (over: Partial<LivenessSample> = {}): LivenessSample => ({
  unackedMs: 0, quietMs: 0, probePending: false, waitingForPeer: false,
  userTimeoutMs: 0, keepIdleS: 0, keepIntvlS: 75, keepCnt: 9, ...over,
});

describe('judgeLiveness', () => {
  it('keeps a connection whose sends are acknowledged, however long it is idle without keepalive', () => {
    expect(judgeLiveness(quiet({ quietMs: 10 * DEFAULT_MS }), DEFAULT_MS)).toEqual({ action: 'ok' });
  });

  it('times out unacknowledged data after TCP_USER_TIMEOUT, and not a moment before', () => {
    expect(judgeLiveness(quiet({ unackedMs: 4999, userTimeoutMs: 5000 }), DEFAULT_MS).action).toBe('ok');
    expect(judgeLiveness(quiet({ unackedMs: 5000, userTimeoutMs: 5000 }), DEFAULT_MS).action).toBe('time-out');
  });

  it('without TCP_USER_TIMEOUT uses the agent default (VTOE_PEER_TIMEOUT_MS)', () => {
    expect(judgeLiveness(quiet({ unackedMs: DEFAULT_MS - 1 }), DEFAULT_MS).action).toBe('resume');
    expect(judgeLiveness(quiet({ unackedMs: DEFAULT_MS }), DEFAULT_MS).action).toBe('time-out');
    expect(judgeLiveness(quiet({ unackedMs: 3000 }), 3000).action).toBe('time-out');
  });

  it('probes a writer held back by the window once the peer has been quiet a while', () => {
    expect(judgeLiveness(quiet({ waitingForPeer: true, quietMs: WINDOW_PROBE_AFTER_MS - 1 }), DEFAULT_MS).action).toBe('ok');
    expect(judgeLiveness(quiet({ waitingForPeer: true, quietMs: WINDOW_PROBE_AFTER_MS }), DEFAULT_MS))
      .toEqual({ action: 'probe', why: 'window' });
    // its probe is then data in flight like any other: the user timeout applies to it
    expect(judgeLiveness(quiet({ waitingForPeer: true, probePending: true, unackedMs: 5000, userTimeoutMs: 5000, keepIdleS: 2 }), DEFAULT_MS)
      .action).toBe('time-out');
  });

  it('keepalive: a probe after TCP_KEEPIDLE of quiet, ETIMEDOUT after TCP_KEEPINTVL × TCP_KEEPCNT unanswered', () => {
    const ka = { keepIdleS: 2, keepIntvlS: 1, keepCnt: 3 };
    expect(judgeLiveness(quiet({ ...ka, quietMs: 1999 }), DEFAULT_MS).action).toBe('ok');
    expect(judgeLiveness(quiet({ ...ka, quietMs: 2000 }), DEFAULT_MS)).toEqual({ action: 'probe', why: 'keepalive' });
    expect(judgeLiveness(quiet({ ...ka, probePending: true, unackedMs: 2999 }), DEFAULT_MS).action).toBe('ok');
    expect(judgeLiveness(quiet({ ...ka, probePending: true, unackedMs: 3000 }), DEFAULT_MS).action).toBe('time-out');
  });

  it('TCP_USER_TIMEOUT overrides keepalive, as in Linux', () => {
    const ka = { keepIdleS: 2, keepIntvlS: 1, keepCnt: 3, probePending: true, userTimeoutMs: 10_000 };
    expect(judgeLiveness(quiet({ ...ka, unackedMs: 5000 }), DEFAULT_MS).action).toBe('ok');
    expect(judgeLiveness(quiet({ ...ka, unackedMs: 10_000 }), DEFAULT_MS).action).toBe('time-out');
  });

  it('keepalive counts only for an idle connection: data in flight waits for the retransmission limit', () => {
    const s = quiet({ keepIdleS: 2, keepIntvlS: 1, keepCnt: 3, unackedMs: 60_000 });
    expect(judgeLiveness(s, DEFAULT_MS).action).toBe('resume');
    expect(unackedLimitMs(s, DEFAULT_MS)).toBe(DEFAULT_MS);
    expect(unackedLimitMs({ ...s, probePending: true }, DEFAULT_MS)).toBe(3000);
  });

  it('sends stuck past the QP\'s own retransmissions: the QP is replaced, with the limit still ahead', () => {
    expect(judgeLiveness(quiet({ unackedMs: STUCK_SEND_MS - 1 }), DEFAULT_MS).action).toBe('ok');
    expect(judgeLiveness(quiet({ unackedMs: STUCK_SEND_MS }), DEFAULT_MS).action).toBe('resume');
    // the socket's own limit comes first: a connection it ends is not resumed
    expect(judgeLiveness(quiet({ unackedMs: STUCK_SEND_MS, userTimeoutMs: 5000 }), DEFAULT_MS).action).toBe('time-out');
    expect(judgeLiveness(quiet({ unackedMs: STUCK_SEND_MS, userTimeoutMs: 30_000 }), DEFAULT_MS).action).toBe('resume');
  });

  it('a keepalive interval or count of 0 (never set by the kernel, but shared memory is writable) still ends', () => {
    const v = judgeLiveness(quiet({ keepIdleS: 2, keepIntvlS: 0, keepCnt: 0, probePending: true, unackedMs: 1000 }), DEFAULT_MS);
    expect(v.action).toBe('time-out');
  });
});
