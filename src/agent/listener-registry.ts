// The listening-port registry of the core connection agent: which offload-capable listeners
// exist, so a REQ can be matched to one. Pure bookkeeping, no I/O.
import { canonical, isWildcard } from './local-addresses.js';
import type { EndBuffers } from './ring-sizing.js';

export interface ListenerEntry {
  sid: number;
  family: 4 | 6;
  address: string; // bound address, possibly a wildcard
  port: number;
  backlog: number;
  program?: string; // of the listening process, for per-program statistics
  buffers?: EndBuffers; // SO_SNDBUF, SO_RCVBUF at LISTEN: its accepted sockets inherit them
}

export class ListenerRegistry {
  private readonly byPort = new Map<number, ListenerEntry[]>();

  add(entry: ListenerEntry): void {
    const list = this.byPort.get(entry.port) ?? [];
    list.push(entry);
    this.byPort.set(entry.port, list);
  }

  remove(sid: number): ListenerEntry | undefined {
    for (const [port, list] of this.byPort) {
      const i = list.findIndex((e) => e.sid === sid);
      if (i < 0) continue;
      const [removed] = list.splice(i, 1);
      if (list.length === 0) this.byPort.delete(port);
      return removed;
    }
    return undefined;
  }

  /** Every listener on `port`, whatever its address. */
  onPort(port: number): readonly ListenerEntry[] {
    return this.byPort.get(port) ?? [];
  }

  get size(): number {
    let n = 0;
    for (const list of this.byPort.values()) n += list.length;
    return n;
  }

  /**
   * The listener a connection to (address, port) reaches, as the kernel would pick it: an exact
   * address match first, then a wildcard. An IPv4 destination also reaches an IPv6 wildcard
   * listener (dual-stack), never the reverse.
   */
  find(family: 4 | 6, address: string, port: number): ListenerEntry | undefined {
    const list = this.byPort.get(port);
    if (!list) return undefined;
    const dst = canonical(address);
    const exact = list.find((e) => !isWildcard(e.address) && canonical(e.address) === dst);
    if (exact) return exact;
    const dstIsV4 = family === 4 || dst.includes('.');
    return list.find((e) => isWildcard(e.address) && (e.family === 6 || dstIsV4));
  }
}
