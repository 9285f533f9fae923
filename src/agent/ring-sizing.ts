// How large a connection's rings may grow, so that each direction holds what kernel TCP would
// before its writer blocks.  Kernel TCP holds up to the writer's send buffer plus the reader's
// receive buffer.  Buffers a program left alone are autotuned, which the configured large area
// (VTOE_RING_MAX_SIZE) stands for; buffers it set (SO_SNDBUF, SO_RCVBUF: the kernel keeps twice
// the value, within net.core.wmem_max and rmem_max) are honoured beyond that, up to the largest
// ring.  Pure: the caller reads the sockets and the host's defaults.
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
  let large = ringSize * 2;
  while (large < need - ringSize && large < RING.max) large *= 2;
  return Math.max(large, configured);
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
