// The VTOE NIC ABI (include/vtoe_abi.h) seen from TypeScript: the same numbers under the same
// names, plus readable names for logs and statistics.  test/native.test.ts checks this file
// against the values compiled into the addon, so header drift fails a test.

export const VTOE_ABI_VERSION = 10;
export const VTOE_CTL_MAGIC = 0x56544f45; // "VTOE"
export const VTOE_REGION_MAGIC = 0x56524730; // "VRG0"
export const VTOE_CACHELINE = 64;
export const VTOE_REGION_DATA_OFFSET = 4096;
/** Sizes in bytes of the fixed-size control messages. */
export const CTL_REQ_BYTES = 96;
export const CTL_REP_BYTES = 56;

/** Ring sizes are powers of two within [min, max]. */
export const RING = { min: 4 * 1024, max: 64 * 1024 * 1024 } as const;

/** enum vtoe_ctl_op */
export const Op = {
  HELLO: 1,
  OPEN: 2,
  LISTEN: 3,
  CONNECT: 4,
  ESTABLISH: 5,
  ACCEPT: 6,
  SHUTDOWN: 7,
  CLOSE: 8,
  FALLBACK: 9,
  PEER_RESET: 10,
  ATTACH: 11,
  BELL: 12,
} as const;
export type Op = (typeof Op)[keyof typeof Op];
export const OP_COUNT = 13;

/** enum vtoe_event */
export const Event = {
  ACK: 0,
  ADDRESS_RESOLVED: 1,
  ADDRESS_ERROR: 2,
  ROUTE_RESOLVED: 3,
  ROUTE_ERROR: 4,
  CONNECT_REQUEST: 5,
  CONNECT_RESPONSE: 6,
  CONNECT_ERROR: 7,
  UNREACHABLE: 8,
  CONNECT_REJECTED: 9,
  CONNECT_ESTABLISHED: 10,
  DISCONNECTED: 11,
  DEVICE_REMOVAL: 12,
  FALLBACK: 13,
  ERROR: 14,
} as const;
export type Event = (typeof Event)[keyof typeof Event];
export const EVENT_COUNT = 15;

/** enum vtoe_fallback_reason */
export const FallbackReason = {
  NONE: 0,
  POLICY: 1,
  PEER_NOT_OFFLOADED: 2,
  NO_FABRIC: 3,
  RESOURCES: 4,
  RENDEZVOUS: 5,
  ADDRESS_FAMILY: 6,
  SHORT_LIVED: 7,
  UNVERIFIED: 8,
  PROCESS_LIMIT: 9,
} as const;
export type FallbackReason = (typeof FallbackReason)[keyof typeof FallbackReason];
export const FALLBACK_REASON_COUNT = 10;

/** enum vtoe_fabric */
export const Fabric = { NONE: 0, SHM: 1, TCP: 2, VERBS: 3 } as const;
export type Fabric = (typeof Fabric)[keyof typeof Fabric];

/** enum vtoe_rep_fd: the order of the descriptors a CONNECT or ACCEPT reply carries. */
export const RepFd = { REGION: 0, APP: 1, PEER_BELL: 2 } as const;
export type RepFd = (typeof RepFd)[keyof typeof RepFd];
export const REP_FD_COUNT = 3;

/** VTOE_CLOSE_* flags of a CLOSE note's arg. */
export const CloseFlag = { RESET: 1, ABORTED: 2 } as const;

/** enum vtoe_bell_op: a BELL note's arg. */
export const BellOp = { RING: 1, DRAIN: 2, SHUT_WR: 3, SHUT_RDWR: 4 } as const;
export type BellOp = (typeof BellOp)[keyof typeof BellOp];
/** VTOE_BELL_REPLY: a BELL note with this flag in its arg is an RPC, answered once done. */
export const BELL_REPLY = 0x100;
/** VTOE_ATTACH_BELL: an ATTACH with this flag in its arg also gets the peer's doorbell. */
export const ATTACH_BELL = 1;

/** Everything above in one place, the way the agent reads it: ABI.ev.ACK, ABI.fb.POLICY, ... */
export const ABI = {
  version: VTOE_ABI_VERSION,
  ctlMagic: VTOE_CTL_MAGIC,
  regionMagic: VTOE_REGION_MAGIC,
  regionDataOffset: VTOE_REGION_DATA_OFFSET,
  ring: RING,
  op: Op,
  ev: Event,
  fb: FallbackReason,
  fabric: Fabric,
  fd: RepFd,
  close: CloseFlag,
  bell: BellOp,
} as const;

// 'PEER_NOT_OFFLOADED' -> 'peer-not-offloaded'
function namesByValue(table: Record<string, number>): Map<number, string> {
  return new Map(Object.entries(table).map(([key, value]) => [value, key.toLowerCase().replaceAll('_', '-')]));
}

const opNames = namesByValue(Op);
const eventNames = namesByValue(Event);
const reasonNames = namesByValue(FallbackReason);
const fabricNames = namesByValue(Fabric);

/** 'hello', 'connect', ...; 'op-<n>' for a number the ABI does not define. */
export function opName(op: number): string {
  return opNames.get(op) ?? `op-${op}`;
}

/** 'ack', 'connect-response', ...; 'event-<n>' for a number the ABI does not define. */
export function eventName(event: number): string {
  return eventNames.get(event) ?? `event-${event}`;
}

/** 'none', 'policy', 'peer-not-offloaded', ...; 'reason-<n>' for an undefined number. */
export function reasonName(reason: number): string {
  return reasonNames.get(reason) ?? `reason-${reason}`;
}

/** 'none', 'shm', 'tcp', 'verbs'; 'fabric-<n>' for an undefined number. */
export function fabricName(fabric: number): string {
  return fabricNames.get(fabric) ?? `fabric-${fabric}`;
}

/** The inverse of reasonName for the defined reasons: 'policy' -> 1. */
export function reasonValue(name: string): FallbackReason | undefined {
  for (const [value, n] of reasonNames) if (n === name) return value as FallbackReason;
  return undefined;
}

export function ringSizeValid(size: number): boolean {
  return Number.isInteger(size) && size >= RING.min && size <= RING.max && (size & (size - 1)) === 0;
}

/**
 * This file's constants under their C names, in the shape the addon's abiConstants() returns,
 * so the two can be compared whole.
 */
export function abiConstantTable(): Record<string, number> {
  const table: Record<string, number> = {
    VTOE_ABI_VERSION,
    VTOE_CTL_MAGIC,
    VTOE_REGION_MAGIC,
    VTOE_CACHELINE,
    VTOE_RING_MIN: RING.min,
    VTOE_RING_MAX: RING.max,
    VTOE_REGION_DATA_OFFSET,
    VTOE_CLOSE_RESET: CloseFlag.RESET,
    VTOE_CLOSE_ABORTED: CloseFlag.ABORTED,
    VTOE_BELL_RING: BellOp.RING,
    VTOE_BELL_DRAIN: BellOp.DRAIN,
    VTOE_BELL_SHUT_WR: BellOp.SHUT_WR,
    VTOE_BELL_SHUT_RDWR: BellOp.SHUT_RDWR,
    VTOE_BELL_REPLY: BELL_REPLY,
    VTOE_ATTACH_BELL: ATTACH_BELL,
    VTOE_EV__COUNT: EVENT_COUNT,
    VTOE_FB__COUNT: FALLBACK_REASON_COUNT,
    VTOE_OP__COUNT: OP_COUNT,
    VTOE_FD__COUNT: REP_FD_COUNT,
    'sizeof(struct vtoe_ctl_req)': CTL_REQ_BYTES,
    'sizeof(struct vtoe_ctl_rep)': CTL_REP_BYTES,
  };
  const add = (prefix: string, values: Record<string, number>) => {
    for (const [key, value] of Object.entries(values)) table[`${prefix}${key}`] = value;
  };
  add('VTOE_EV_', Event);
  add('VTOE_FB_', FallbackReason);
  add('VTOE_FABRIC_', Fabric);
  add('VTOE_OP_', Op);
  add('VTOE_FD_', RepFd);
  return table;
}
