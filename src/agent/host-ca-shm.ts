// The host connection agent of the shm fabric (VNET_Host_CA for one host): it creates the
// shared region and doorbells of a shadow connection and hands each end its descriptors.
// After that the two processes move bytes between themselves; the agent reads counters and
// ends a side whose socket is gone from every process, as the kernel ends a TCP socket.
import { ShmConnection } from '../native.js';

/** What the core CA uses of a connection's region (tests substitute a fake). */
export type ShmLink = Pick<ShmConnection, 'ringSize' | 'mappedBytes' | 'residentBytes' | 'fdsFor' | 'releaseSide' | 'sideOfSocket' | 'regionFd' | 'bellOp' | 'watchEnds' | 'hangUp' | 'relay' | 'counters' | 'close'>;

export class ShmHostCA {
  /** ringMaxSize: how far a ring grows for a reader that stalled; at most ringSize: never. */
  constructor(private readonly ringSize: number, private readonly ringMaxSize = 0) {}

  createLink(cid: bigint): ShmLink {
    return new ShmConnection(this.ringSize, cid, this.ringMaxSize > this.ringSize ? this.ringMaxSize : 0);
  }
}
