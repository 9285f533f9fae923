// The host connection agent of the shm fabric (VNET_Host_CA for one host): it creates the
// shared region and doorbells of a shadow connection and hands each end its descriptors.
// After that the two processes move bytes between themselves; the agent reads counters and
// ends a side whose socket is gone from every process, as the kernel ends a TCP socket.
import { readFileSync } from 'node:fs';
import { ShmConnection, ShmRegionPool } from '../native.js';
import { parseBufferDefaults, ringLargeFor, type BufferDefaults, type EndBuffers } from './ring-sizing.js';

/** What the core CA uses of a connection's region (tests substitute a fake). */
export type ShmLink = Pick<ShmConnection, 'ringSize' | 'mappedBytes' | 'residentBytes' | 'fdsFor' | 'releaseSide' | 'sideOfSocket' | 'regionFd' | 'bellOp' | 'watchEnds' | 'hangUp' | 'relay' | 'counters' | 'close'>;

/** Regions made ahead (ShmRegionPool): two cover a connection being set up and the next. */
const REGIONS_AHEAD = 2;

export class ShmHostCA {
  private readonly ringLarge: number;
  private pool: ShmRegionPool | undefined;
  private defaults: BufferDefaults | undefined;

  /** ringMaxSize: how far a ring grows for a reader that stalled; at most ringSize: never. */
  constructor(private readonly ringSize: number, ringMaxSize = 0) {
    this.ringLarge = ringMaxSize > ringSize ? ringMaxSize : 0;
  }

  /** How far the rings of a connection between these ends may grow (ring-sizing.ts). */
  ringLargeFor(client: EndBuffers, server: EndBuffers): number {
    this.defaults ??= readBufferDefaults();
    return ringLargeFor(client, server, this.ringSize, this.ringLarge, this.defaults);
  }

  /** ringLarge: the large area, if not the configured one (the pool holds only those). */
  createLink(cid: bigint, ringLarge = this.ringLarge): ShmLink {
    // Made on first use, so an agent nobody connects through holds no spare regions.
    this.pool ??= new ShmRegionPool(this.ringSize, this.ringLarge, REGIONS_AHEAD);
    return new ShmConnection(this.ringSize, cid, ringLarge, this.pool);
  }

  /** Stops making regions ahead and closes the spare ones. */
  close(): void {
    this.pool?.close();
  }
}

/** The kernel's initial TCP buffer sizes in the agent's network namespace. */
function readBufferDefaults(): BufferDefaults {
  const read = (name: string): string | undefined => {
    try {
      return readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8');
    } catch {
      return undefined; // no such sysctl here: Linux's defaults
    }
  };
  return parseBufferDefaults(read('tcp_wmem'), read('tcp_rmem'));
}
