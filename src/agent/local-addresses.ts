// Which addresses belong to this host (in the agent's network namespace). The shm fabric may
// only carry a connection whose destination is one of them.
import { networkInterfaces } from 'node:os';
import { isIPv4 } from 'node:net';

const REFRESH_MS = 1000;
let cache = new Set<string>();
let refreshedAt = 0;

function refresh(): void {
  const next = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const info of list ?? []) next.add(canonical(info.address));
  }
  cache = next;
  refreshedAt = Date.now();
}

/** IPv4-mapped IPv6 addresses compare as their IPv4 form. */
export function canonical(address: string): string {
  // Dotted IPv4 as inet_ntop writes it is canonical already: the common case, several per message.
  if (!address.includes(':') && !address.includes('%')) return address;
  const lower = address.toLowerCase().replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  return mapped ? mapped[1]! : lower;
}

export function isWildcard(address: string): boolean {
  const a = canonical(address);
  return a === '0.0.0.0' || a === '::';
}

export function isLoopback(address: string): boolean {
  const a = canonical(address);
  return a === '::1' || (isIPv4(a) && a.startsWith('127.'));
}

export function isLocalAddress(address: string): boolean {
  if (isLoopback(address)) return true;
  const a = canonical(address);
  if (cache.has(a)) return true;
  if (Date.now() - refreshedAt < REFRESH_MS) return false;
  refresh();
  return cache.has(a);
}
