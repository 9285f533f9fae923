// Listeners whose connections are too short for offload to pay. Setting up an offloaded
// connection (a region, two round trips to the agent, mappings in both processes) costs far
// more than a kernel TCP connect; a connection that moves a few bytes and closes never wins
// it back. After `window` such connections in a row to one listener, its new connections stay
// on kernel TCP for `holdMs`, and the shims are told they need not even ask until then. After
// that one connection is offloaded again as a probe: short too, and the hold starts again;
// long (still open after maxLifetimeMs, or it moved more), and the listener is offloaded as
// before. Pure: the caller passes the time (ms, any monotonic origin).

export interface ShortConnectionRules {
  /** A connection that moved at most this many bytes (both ways)... (0: the rule is off) */
  maxBytes: number;
  /** ...and closed within this many milliseconds of its CONNECT is short. */
  maxLifetimeMs: number;
  /** This many short connections in a row make a listener short. */
  window: number;
  /** How long a short listener's connections stay on kernel TCP before the next probe. */
  holdMs: number;
}

export type ShortVerdict =
  | { offload: true }
  /** skipUntil: until then no connection to the listener is offloaded (0: only this one). */
  | { offload: false; skipUntil: number };

interface ListenerHistory {
  shortInARow: number;
  holdUntil: number;
  probeSince: number | null;
}

export class ShortConnections {
  private readonly listeners = new Map<number, ListenerHistory>();

  constructor(private readonly rules: ShortConnectionRules) {}

  get enabled(): boolean {
    return this.rules.maxBytes > 0 && this.rules.window > 0;
  }

  /** A client asks for a connection to listener `sid`. */
  decide(sid: number, now: number): ShortVerdict {
    const h = this.listeners.get(sid);
    if (!this.enabled || !h) return { offload: true };
    // A promise given (quietUntil) is kept, even if a long connection ended meanwhile.
    if (now < h.holdUntil) return { offload: false, skipUntil: h.holdUntil };
    if (h.shortInARow < this.rules.window) return { offload: true };
    if (h.probeSince === null) {
      h.probeSince = now; // this one is the probe
      return { offload: true };
    }
    // A probe lives: not short once it outlives the rule (a rejected one ends the same way).
    if (now - h.probeSince <= this.rules.maxLifetimeMs) return { offload: false, skipUntil: 0 };
    h.shortInARow = 0;
    h.probeSince = null;
    return { offload: true };
  }

  /** An offloaded connection to listener `sid` closed (its first end): what it did. */
  ended(sid: number, bytes: number, lifetimeMs: number, now: number): void {
    if (!this.enabled) return;
    let h = this.listeners.get(sid);
    if (!h) this.listeners.set(sid, (h = { shortInARow: 0, holdUntil: 0, probeSince: null }));
    const short = bytes <= this.rules.maxBytes && lifetimeMs <= this.rules.maxLifetimeMs;
    h.shortInARow = short ? Math.min(h.shortInARow + 1, this.rules.window) : 0;
    h.probeSince = null;
    if (h.shortInARow >= this.rules.window) h.holdUntil = now + this.rules.holdMs;
  }

  /** Until when no connection to `sid` will be offloaded; 0 if that is not promised now. */
  quietUntil(sid: number, now: number): number {
    const h = this.listeners.get(sid);
    return h && now < h.holdUntil ? h.holdUntil : 0;
  }

  forget(sid: number): void {
    this.listeners.delete(sid);
  }

  get size(): number {
    return this.listeners.size;
  }
}

/** CLOCK_MONOTONIC in milliseconds: the clock the shims compare skip_until_ms with. */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/** A time for skip_until_ms: its low 32 bits, never 0 (which means "ask every time"). */
export function wireMs(ms: number): number {
  return ms > 0 ? ms % 2 ** 32 || 1 : 0;
}
