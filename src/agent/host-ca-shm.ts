// The host connection agent of the shm fabric (VNET_Host_CA for one host): it creates the
// shared region and doorbells of a shadow connection and hands each end its descriptors.
// After that the two processes move bytes between themselves; the agent only reads counters.
import { ShmConnection, type RingCounters } from '../native.js';

export interface ShmLink {
  readonly ringSize: number;
  readonly mappedBytes: number;
  fdsFor(side: 0 | 1): number[];
  releaseSide(side: 0 | 1): void;
  counters(): RingCounters;
  close(): void;
}

export class ShmHostCA {
  constructor(private readonly ringSize: number) {}

  createLink(cid: bigint): ShmLink {
    const shm = new ShmConnection(this.ringSize, cid);
    const ringSize = this.ringSize;
    return {
      ringSize,
      mappedBytes: shm.mappedBytes,
      fdsFor: (side) => shm.fdsFor(side),
      releaseSide: (side) => shm.releaseSide(side),
      counters: () => shm.counters(),
      close: () => shm.close(),
    };
  }
}
