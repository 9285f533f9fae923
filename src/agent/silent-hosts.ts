// Remote hosts that do not answer the verbs fabric. A REQ to a host without an RDMA device (or
// whose fabric drops our packets) gets no REP and no REJ, so its connect falls back only at the
// REQ's deadline, seconds later; a program that connects to such a host again and again would
// wait that long each time, where kernel TCP takes a round trip. So once a host leaves a REQ
// unanswered, its connections use kernel TCP at once for a hold; after the hold one connection
// tries the fabric again (the others still fall back at once while it does); silent again, the
// hold doubles, up to 16 times the first; any answer, a REP or a REJ, forgets the host. Pure: the
// caller passes the time (ms, any monotonic origin).

export interface SilentHostRules {
  /** The first hold after a REQ went unanswered (0: the rule is off). */
  holdMs: number;
  /** How long a probing connection may take before another may probe (its REQ's deadline). */
  probeMs: number;
  /** How many hosts are remembered; the longest-known is forgotten first. */
  maxHosts: number;
}

export const SILENT_HOLD_GROWTH_MAX = 16;

export type SilentVerdict =
  | { tryFabric: true }
  /** until: when the next connection may try the fabric again (0: once the probe ends). */
  | { tryFabric: false; until: number };

interface HostHistory {
  holdMs: number; // the hold in force, doubled at each unanswered probe
  holdUntil: number;
  probeSince: number | null;
}

export class SilentHosts {
  private readonly hosts = new Map<string, HostHistory>();

  constructor(private readonly rules: SilentHostRules) {}

  get enabled(): boolean {
    return this.rules.holdMs > 0 && this.rules.maxHosts > 0;
  }

  /** A connection to `host` is about to use the fabric: may it? */
  decide(host: string, now: number): SilentVerdict {
    const h = this.hosts.get(host);
    if (!this.enabled || !h) return { tryFabric: true };
    if (now < h.holdUntil) return { tryFabric: false, until: h.holdUntil };
    if (h.probeSince !== null && now - h.probeSince < this.rules.probeMs) return { tryFabric: false, until: 0 };
    h.probeSince = now; // this one probes
    return { tryFabric: true };
  }

  /** A REQ to `host` got neither REP nor REJ (a timeout, unreachable, no address or route). */
  unanswered(host: string, now: number): void {
    if (!this.enabled) return;
    let h = this.hosts.get(host);
    if (h) {
      this.hosts.delete(host); // re-inserted: the map's order is the order of last silence
      h.holdMs = Math.min(h.holdMs * 2, this.rules.holdMs * SILENT_HOLD_GROWTH_MAX);
    } else {
      h = { holdMs: this.rules.holdMs, holdUntil: 0, probeSince: null };
    }
    h.holdUntil = now + h.holdMs;
    h.probeSince = null;
    this.hosts.set(host, h);
    while (this.hosts.size > this.rules.maxHosts) this.hosts.delete(this.hosts.keys().next().value!);
  }

  /** `host` answered a REQ (a REP, or a REJ: its fabric works). */
  answered(host: string): void {
    this.hosts.delete(host);
  }

  /** The hosts held now, with how long each stays held (ms). */
  held(now: number): { host: string; forMs: number }[] {
    const out: { host: string; forMs: number }[] = [];
    for (const [host, h] of this.hosts) if (now < h.holdUntil) out.push({ host, forMs: h.holdUntil - now });
    return out;
  }

  get size(): number {
    return this.hosts.size;
  }
}
