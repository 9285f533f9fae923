// How large a connection's rings may grow, so that each direction holds what kernel TCP would
// before its writer blocks.  Kernel TCP holds up to the writer's send buffer plus the reader's
// receive buffer.  Buffers a program left alone are autotuned, which the configured large area
// (VTOE_RING_MAX_SIZE) stands for; buffers it set (SO_SNDBUF, SO_RCVBUF: the kernel keeps twice
// the value, within net.core.wmem_max and rmem_max) are honoured beyond that, up to the largest
// ring.  The region's large area is sized here; how far a ring fills it is decided as it goes
// (vtoe_large_fill() in vtoe_abi.h), since a program may set its buffers at any time.  Pure: the
// caller reads the sockets and the host's settings.
import { RING } from '../abi.js';

/** SO_SNDBUF and SO_RCVBUF of one end's socket, as getsockopt returns them. */
export interface EndBuffers {
  sndbuf: number;
  rcvbuf: number;
}

/** The kernel's initial sizes (tcp_wmem[1], tcp_rmem[1]): a larger value was set by the program. */
export interface BufferDefaults {
  sndbuf: number;
  rcvbuf: number;
}

export const LINUX_BUFFER_DEFAULTS: BufferDefaults = { sndbuf: 16384, rcvbuf: 131072 };

/**
 * The large area (ring_large) for a connection between ends `client` and `server` (the latter
 * as its listener had them: accepted sockets inherit them).  `configured` is the agent's own
 * (0: rings do not grow unless a program asks); the result is 0 or a power of two above
 * ringSize, at most RING.max.  A ring holds its small and its large area (vtoe_abi.h).
 */
export function ringLargeFor(client: EndBuffers, server: EndBuffers, ringSize: number, configured: number,
  defaults: BufferDefaults = LINUX_BUFFER_DEFAULTS): number {
  const need = Math.max(sent(client, defaults, configured) + received(server, defaults),
    sent(server, defaults, configured) + received(client, defaults));
  if (need <= ringSize + configured || ringSize * 2 > RING.max) return configured;
  return Math.max(areaFor(need - ringSize, ringSize), configured);
}

/** A large area of at least `bytes` (a power of two above ringSize), at most RING.max. */
function areaFor(bytes: number, ringSize: number): number {
  let large = ringSize * 2;
  while (large < bytes && large < RING.max) large *= 2;
  return large;
}

/** net.core.wmem_max and rmem_max: the most SO_SNDBUF and SO_RCVBUF take without FORCE. */
export interface BufferLimits {
  wmemMax: number;
  rmemMax: number;
}

export const LINUX_BUFFER_LIMITS: BufferLimits = { wmemMax: 212992, rmemMax: 212992 };

/**
 * The large area of a connection whose ends set no buffers before it existed: room for what
 * they may still set (twice each limit, as the kernel keeps it) where that is more than the
 * configured area, at most RING.max.  Only what is written uses pages; the fill stays at the
 * configured size until a program asks.  0 when rings are configured not to grow.
 */
export function largeAreaFor(ringSize: number, configured: number, limits: BufferLimits): number {
  if (configured === 0) return 0;
  const most = 2 * limits.wmemMax + 2 * limits.rmemMax;
  if (most <= ringSize + configured || ringSize * 2 > RING.max) return configured;
  return Math.max(areaFor(most - ringSize, ringSize), configured);
}

/** The buffers an end set, as the program set them (half what the kernel keeps; 0: not set). */
export function buffersSet(e: EndBuffers, defaults: BufferDefaults = LINUX_BUFFER_DEFAULTS): EndBuffers {
  return {
    sndbuf: e.sndbuf > defaults.sndbuf ? Math.floor(e.sndbuf / 2) : 0,
    rcvbuf: e.rcvbuf > defaults.rcvbuf ? Math.floor(e.rcvbuf / 2) : 0,
  };
}

/** wmem_max and rmem_max from their sysctl files' text. */
export function parseBufferLimits(wmemMax: string | undefined, rmemMax: string | undefined): BufferLimits {
  const value = (text: string | undefined, fallback: number): number => {
    const v = Number(text?.trim());
    return Number.isSafeInteger(v) && v > 0 ? v : fallback;
  };
  return { wmemMax: value(wmemMax, LINUX_BUFFER_LIMITS.wmemMax), rmemMax: value(rmemMax, LINUX_BUFFER_LIMITS.rmemMax) };
}

/** What a writer's kernel would hold: the send buffer it set, else autotuned (configured). */
function sent(e: EndBuffers, defaults: BufferDefaults, configured: number): number {
  return e.sndbuf > defaults.sndbuf ? e.sndbuf : configured;
}

/** What a reader's kernel would hold beyond a ring's small area: the receive buffer it set. */
function received(e: EndBuffers, defaults: BufferDefaults): number {
  return e.rcvbuf > defaults.rcvbuf ? e.rcvbuf : 0;
}

/** tcp_wmem[1] and tcp_rmem[1] from their sysctl files' text ("min default max"). */
export function parseBufferDefaults(tcpWmem: string | undefined, tcpRmem: string | undefined): BufferDefaults {
  const middle = (text: string | undefined, fallback: number): number => {
    const v = Number(text?.trim().split(/\s+/)[1]);
    return Number.isSafeInteger(v) && v > 0 ? v : fallback;
  };
  return { sndbuf: middle(tcpWmem, LINUX_BUFFER_DEFAULTS.sndbuf), rcvbuf: middle(tcpRmem, LINUX_BUFFER_DEFAULTS.rcvbuf) };
}
