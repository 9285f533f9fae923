// The pinned-memory budget of the verbs fabric.  Every verbs connection end registers its two
// rings and its mailbox with the RDMA device, and registered pages are pinned: the kernel can
// neither swap nor reclaim them.  Without a bound, enough connections pin a host's memory away
// (500 ends on a 768 MiB host left 160 MB available; 1000 stopped it).  So each end reserves its
// pages here before its queue pair exists, and an end that does not fit is made on kernel TCP
// (fallback `resources`), as the kernel makes a connection when memory is short.  Pure: the
// host's figures are read by the caller (src/host-memory.ts).
import type { HostMemory } from '../host-memory.js';

const PAGE = 4096;

/**
 * Bytes one connection end pins: its tx and rx rings, and the page of its mailbox.  The
 * queues themselves are the provider's and not counted (rxe keeps them in kernel memory).
 */
export function pinnedBytesPerEnd(ringSize: number): number {
  return 2 * ringSize + PAGE;
}

/**
 * The budget: VTOE_PINNED_MAX when set, else a quarter of physical memory.  Either way no more
 * than three quarters of a finite memlock limit that applies (the rest is left for what the
 * provider registers itself), since a registration past it fails anyway.
 */
export function pinnedLimit(configured: number, host: HostMemory): number {
  let limit = configured > 0 ? configured : Math.floor(host.memTotal / 4);
  if (!host.ipcLock && typeof host.memlockSoft === 'number') limit = Math.min(limit, Math.floor(host.memlockSoft * 3 / 4));
  return limit;
}

export interface PinnedSnapshot {
  /** what the connection ends reserved (their rings and mailboxes) */
  bytes: number;
  limit: number;
  peak: number;
  /** connection ends holding a reservation (one queue pair each) */
  ends: number;
  /** ends refused because they did not fit */
  refused: number;
  /** the agent's send buffers (chunks of registered memory for readers that lag), which take
   * what the ends leave of the budget; absent where the budget has none */
  staged?: { bytes: number; peak: number; refused: number };
}

export class PinnedBudget {
  private bytes = 0;
  private peak = 0;
  private ends = 0;
  private refused = 0;

  constructor(readonly limit: number) {}

  /** Takes `bytes` if they fit beside `alsoPinned` (the send buffers' now); false (and
   * counted) if they do not. */
  reserve(bytes: number, alsoPinned = 0): boolean {
    if (this.bytes + bytes + alsoPinned > this.limit) {
      this.refused++;
      return false;
    }
    this.bytes += bytes;
    this.ends++;
    if (this.bytes > this.peak) this.peak = this.bytes;
    return true;
  }

  release(bytes: number): void {
    if (bytes <= 0) return;
    if (bytes > this.bytes || this.ends === 0) throw new Error(`pinned budget: releasing ${bytes} of ${this.bytes} reserved`);
    this.bytes -= bytes;
    this.ends--;
  }

  /** What the ends leave of the budget: the send buffers may take that much. */
  get unreserved(): number {
    return this.limit - this.bytes;
  }

  snapshot(): PinnedSnapshot {
    return { bytes: this.bytes, limit: this.limit, peak: this.peak, ends: this.ends, refused: this.refused };
  }
}
