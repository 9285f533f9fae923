// The host connection agent of the shm fabric (VNET_Host_CA for one host): it creates the
// shared region and doorbells of a shadow connection and hands each end its descriptors.
// After that the two processes move bytes between themselves; the agent reads counters and
// ends a side whose socket is gone from every process, as the kernel ends a TCP socket.
import { readFileSync } from 'node:fs';
import { ShmConnection, ShmRegionPool, type RingFill } from '../native.js';
import {
  buffersSet, largeAreaFor, parseBufferDefaults, parseBufferLimits, ringLargeFor,
  type BufferDefaults, type BufferLimits, type EndBuffers,
} from './ring-sizing.js';

/** What the core CA uses of a connection's region (tests substitute a fake). */
export type ShmLink = Pick<ShmConnection, 'ringSize' | 'mappedBytes' | 'residentBytes' | 'fdsFor' | 'releaseSide' | 'sideOfSocket' | 'regionFd' | 'peerBellFd' | 'bellOp' | 'watchEnds' | 'hangUp' | 'relay' | 'counters' | 'close'>;

/** Regions made ahead (ShmRegionPool): two cover a connection being set up and the next. */
const REGIONS_AHEAD = 2;

/** The two ends' buffers as the agent read them: the client's socket, the server's listener. */
export interface LinkBuffers {
  client: EndBuffers;
  server: EndBuffers;
}

export class ShmHostCA {
  /** How far a large area fills for ends that set no buffers (0: rings do not grow). */
  private readonly ringAuto: number;
  /** The large area of a connection whose ends set no buffers before it existed. */
  private readonly ringLarge: number;
  private pool: ShmRegionPool | undefined;
  private defaults: BufferDefaults | undefined;

  /** ringMaxSize: how far a ring grows for a reader that stalled; at most ringSize: never.
   * limits: the host's wmem_max and rmem_max (read from /proc when not given). */
  constructor(private readonly ringSize: number, ringMaxSize = 0, limits: BufferLimits = readBufferLimits()) {
    this.ringAuto = ringMaxSize > ringSize ? ringMaxSize : 0;
    this.ringLarge = largeAreaFor(ringSize, this.ringAuto, limits);
  }

  /** A connection's region; buffers: its ends', when the agent could read them. */
  createLink(cid: bigint, buffers?: LinkBuffers): ShmLink {
    let large = this.ringLarge;
    const fill: RingFill = { auto: this.ringAuto };
    if (buffers) {
      this.defaults ??= readBufferDefaults();
      const { client, server } = buffers;
      // Past the host's limits (SO_*BUFFORCE) the area is sized for them (the pool holds none).
      large = Math.max(large, ringLargeFor(client, server, this.ringSize, this.ringAuto, this.defaults));
      const set = [buffersSet(client, this.defaults), buffersSet(server, this.defaults)] as const;
      if (set.some((e) => e.sndbuf || e.rcvbuf)) fill.set = set;
    }
    // Made on first use, so an agent nobody connects through holds no spare regions.
    this.pool ??= new ShmRegionPool(this.ringSize, this.ringLarge, REGIONS_AHEAD);
    return new ShmConnection(this.ringSize, cid, large, this.pool, fill);
  }

  /** Stops making regions ahead and closes the spare ones. */
  close(): void {
    this.pool?.close();
  }
}

/** A sysctl of the agent's network namespace; undefined where it has none (Linux's defaults). */
function readSysctl(name: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/net/${name}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** The kernel's initial TCP buffer sizes. */
function readBufferDefaults(): BufferDefaults {
  return parseBufferDefaults(readSysctl('ipv4/tcp_wmem'), readSysctl('ipv4/tcp_rmem'));
}

/** The most SO_SNDBUF and SO_RCVBUF take without FORCE, here (Linux's defaults where unreadable). */
export function readBufferLimits(): BufferLimits {
  return parseBufferLimits(readSysctl('core/wmem_max'), readSysctl('core/rmem_max'));
}
