import { eventName } from '../abi.js';
import type { PinnedSnapshot } from './pinned-budget.js';

// Counters the agent keeps for `vtoe stats`. They live as long as the agent, not the programs.
export interface StatsSnapshot {
  agent: { pid: number; socket: string; uptimeSeconds: number };
  processes: { connected: number; seen: number; protocolErrors: number };
  offloaded: number; // connections carried by a fabric since the agent started
  connections: { open: number; pendingAccept: number; timewait: number };
  /** each fabric: 'up…', 'down: why' or 'off (…)' */
  fabrics: { shm: string; verbs: string };
  listeners: number;
  kernelAccepted: number; // kernel TCP clients accepted on both-mode listeners
  rejected: number; // REJ: connections that did not complete (the kernel rendezvous failed)
  peerTimeouts: number; // verbs connections ended with ETIMEDOUT: the remote peer fell silent
  resumes?: number; // verbs connections moved to a new QP after theirs failed or stuck (a link flap)
  fallback: { total: number; reasons: Record<string, number> };
  /** requests refused as unproven claims, by REFUSALS reason */
  refused: Record<string, number>;
  /** per program name: connections it took part in that were offloaded, and its fallbacks */
  programs: Record<string, ProgramStats>;
  bytes: { sent: number; received: number };
  doorbells: number; // wake-ups sent to sleeping readers (event suppression keeps it below the writes)
  ringGrowths: number; // rings that moved to their large area: a reader lagged, or a bulk write

  events: Record<string, number>;
  memory: { ringBytes: number; agentStateBytes: number };
  /** the verbs fabric's pinned-memory budget and its use; null without the verbs fabric */
  pinned: PinnedSnapshot | null;
  /** remote hosts held on kernel TCP because they left a verbs REQ unanswered, ms left of each hold */
  silentHosts?: { host: string; forMs: number }[];
  /** the agent's polling of verbs connections with traffic (VTOE_VERBS_SPIN_US); null without the fabric */
  verbsPolling?: { polled: number; windows: number; caught: number } | null;
}

/**
 * Requests the agent refused because the socket they passed did not prove their claim: a
 * process trying to take, squat or register what is not its own.
 */
export const REFUSALS = [
  'listen-unproven', // LISTEN without an unconnected socket bound at that address
  'connect-unproven', // CONNECT without a socket bound at the port it names
  'connect-duplicate', // CONNECT for a rendezvous another connection already waits on
  'accept-unproven', // ACCEPT without a connected TCP socket
  'accept-not-party', // ACCEPT with a socket that is not the server end of that connection
  'foreign-netns', // a socket of another network namespace, where any address can be made
  'peer-unauthenticated', // a remote agent that did not prove the cluster key (verbs REQ, REP or first message)
  'passive-unclaimed', // a remote connection that no kernel rendezvous followed: nobody could accept it
  'passive-backlog', // a listener's remote connections waiting for accept() reached VTOE_MAX_PENDING_ACCEPTS
] as const;
export type Refusal = (typeof REFUSALS)[number];

/** How many program names `vtoe stats` keeps apart; any process can make up a name. */
export const MAX_PROGRAMS = 256;
export const OTHER_PROGRAMS = '(others)';

export interface ProgramStats {
  offloaded: number;
  fallback: Record<string, number>;
}

export class AgentCounters {
  offloaded = 0;
  kernelAccepted = 0;
  rejected = 0;
  peerTimeouts = 0;
  resumes = 0;
  processesSeen = 0;
  protocolErrors = 0;
  /** Bytes of connections that are gone; live ones are read from their rings. */
  closedBytesSent = 0;
  closedBytesReceived = 0;
  closedDoorbells = 0;
  closedRingGrowths = 0;
  readonly fallbackReasons = new Map<string, number>();
  readonly refusals = new Map<Refusal, number>();
  readonly events = new Map<string, number>();
  readonly programs = new Map<string, ProgramStats>();

  /** Programs counted by name, at most MAX_PROGRAMS of them: later names count as OTHER_PROGRAMS. */
  private program(name: string): ProgramStats {
    let p = this.programs.get(name);
    if (!p && name !== OTHER_PROGRAMS && this.programs.size >= MAX_PROGRAMS) return this.program(OTHER_PROGRAMS);
    if (!p) this.programs.set(name, (p = { offloaded: 0, fallback: {} }));
    return p;
  }

  /** A connection between these programs' processes now runs on a fabric. */
  connectionOffloaded(programs: readonly string[]): void {
    this.offloaded++;
    for (const name of new Set(programs)) this.program(name).offloaded++;
  }

  /** The other program of a connection counted already (connectionOffloaded(alreadyCounted)),
   * when it becomes known later: a program counts once per connection, as there. */
  programJoined(program: string, alreadyCounted: readonly string[]): void {
    if (!alreadyCounted.includes(program)) this.program(program).offloaded++;
  }

  fallback(reason: string, program = '?', count = 1): void {
    this.fallbackReasons.set(reason, (this.fallbackReasons.get(reason) ?? 0) + count);
    const p = this.program(program);
    p.fallback[reason] = (p.fallback[reason] ?? 0) + count;
  }

  refused(why: Refusal): void {
    this.refusals.set(why, (this.refusals.get(why) ?? 0) + 1);
  }

  /** An event (enum vtoe_event) the agent raised or replied with. */
  event(code: number): void {
    const name = eventName(code);
    this.events.set(name, (this.events.get(name) ?? 0) + 1);
  }

  get fallbackTotal(): number {
    let n = 0;
    for (const v of this.fallbackReasons.values()) n += v;
    return n;
  }
}
