// When a verbs connection's peer has fallen silent for good, judged as Linux TCP judges it.
//
// A remote host can vanish without a word (power, panic, a cable), and RC may retry for ever
// (rdma_rxe does), so the agent looks at each connection's data path now and then: how long its
// oldest send has gone unacknowledged by the peer's HCA, and how long since the peer last showed
// life.  The process's own socket settings decide, as they would for its kernel socket:
// - data unacknowledged: ETIMEDOUT after TCP_USER_TIMEOUT, or else after the agent's default
//   (VTOE_PEER_TIMEOUT_MS, as Linux's tcp_retries2 gives about 15 minutes);
// - a writer held back by a full window with nothing in flight: a probe (TCP's zero-window
//   probe), so that a dead peer shows as an unacknowledged send;
// - sends unacknowledged for STUCK_SEND_MS with the limit still ahead: the QP is failing or
//   stuck (a link flap), so it is replaced by a new one (verbs-resume.ts), which the same limit
//   bounds;
// - SO_KEEPALIVE on an idle connection: a probe after TCP_KEEPIDLE, and ETIMEDOUT when it is
//   still unacknowledged after TCP_KEEPINTVL × TCP_KEEPCNT (or TCP_USER_TIMEOUT when set,
//   which overrides keepalive in Linux too).
// Pure: no I/O, tested in test/liveness.test.ts.
import type { LivenessSample } from '../native-verbs.js';

export type LivenessVerdict =
  | { action: 'ok' }
  | { action: 'probe'; why: 'keepalive' | 'window' }
  | { action: 'resume'; why: string }
  | { action: 'time-out'; why: string };

/** How long a window-blocked writer waits with nothing in flight before it probes. */
export const WINDOW_PROBE_AFTER_MS = 1000;
/** Sends unacknowledged this long: past the QP's own retransmissions (2.1 s apart), so the QP
 * is replaced.  Hardware gives up after 7 of them (about 15 s); Soft-RoCE can stall sooner. */
export const STUCK_SEND_MS = 8000;

/** How long data may go unacknowledged before the connection times out (ETIMEDOUT). */
export function unackedLimitMs(s: LivenessSample, defaultTimeoutMs: number): number {
  // Keepalive probes alone in flight: the connection was idle, so keepalive's count rules.
  if (s.probePending && s.keepIdleS > 0 && s.userTimeoutMs === 0 && !s.waitingForPeer) {
    return Math.max(1, s.keepIntvlS) * Math.max(1, s.keepCnt) * 1000;
  }
  return s.userTimeoutMs > 0 ? s.userTimeoutMs : defaultTimeoutMs;
}

export function judgeLiveness(s: LivenessSample, defaultTimeoutMs: number): LivenessVerdict {
  const keepalive = s.keepIdleS > 0;
  if (s.unackedMs > 0) {
    const limit = unackedLimitMs(s, defaultTimeoutMs);
    if (s.unackedMs >= limit) {
      return { action: 'time-out', why: `nothing acknowledged for ${s.unackedMs} ms (limit ${limit} ms)` };
    }
    if (s.unackedMs >= STUCK_SEND_MS) return { action: 'resume', why: `nothing acknowledged for ${s.unackedMs} ms` };
    return { action: 'ok' };
  }
  if (s.waitingForPeer && s.quietMs >= WINDOW_PROBE_AFTER_MS) return { action: 'probe', why: 'window' };
  if (keepalive && s.quietMs >= s.keepIdleS * 1000) return { action: 'probe', why: 'keepalive' };
  return { action: 'ok' };
}
