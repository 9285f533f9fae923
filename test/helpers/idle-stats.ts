// A StatsSnapshot of an agent that has done nothing yet, for tests of its renderings.
import type { StatsSnapshot } from '../../src/agent/stats.js';

export function idleStats(over: Partial<StatsSnapshot> = {}): StatsSnapshot {
  return {
    agent: { pid: 1, socket: '/s', uptimeSeconds: 0 }, processes: { connected: 0, seen: 0, protocolErrors: 0 }, offloaded: 0,
    connections: { open: 0, pendingAccept: 0, timewait: 0 }, fabrics: { shm: 'up', verbs: 'up' }, listeners: 0, kernelAccepted: 0,
    rejected: 0, peerTimeouts: 0, fallback: { total: 0, reasons: {} }, refused: {}, programs: {}, bytes: { sent: 0, received: 0 },
    doorbells: 0, ringGrowths: 0, events: {}, memory: { ringBytes: 0, agentStateBytes: 0 }, pinned: null, ...over,
  };
}
