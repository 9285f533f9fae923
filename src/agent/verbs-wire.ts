// The private data of the verbs fabric's CM messages (agent to agent, over rdma_cm).  REQ
// carries the SID, the destination port and the receive credits (docs/design.md section 4), plus
// where the peer may RDMA WRITE; REP answers with the passive side's window, a nonce and its
// proof of the cluster key (cluster-key.ts); a consumer REJ says why, as a vtoe fallback reason.  Everything from the wire is checked: a malformed REQ
// is rejected, a malformed REP or REJ fails only that connection.  A connection whose QP failed
// is resumed on a new one by a resume REQ/REP that name it by its token (the first REP's nonce)
// and give where each side's stream stands.
import { isIPv4, isIPv6 } from 'node:net';
import type { PeerWindow } from '../native-verbs.js';
import { MAC_BYTES, NONCE_BYTES } from './cluster-key.js';

const REQ_MAGIC = 0x56545133; // "VTQ3": an agent that knows the `accepted` message
const REP_MAGIC = 0x56545032; // "VTP2"
const REJ_MAGIC = 0x56544a31; // "VTJ1"
const RESUME_REQ_MAGIC = 0x56545231; // "VTR1"
const RESUME_REP_MAGIC = 0x56545331; // "VTS1"

/** rdma_cm's limit for REQ private data on RC (IB CM: 92 bytes less its 36-byte header). */
export const REQ_PRIVATE_DATA_MAX = 56;

export interface ReqData extends PeerWindow {
  sid: number;
  /** the destination the process connected to (the listener's address and port) */
  dstAddress: string;
  dstPort: number;
  /** the process's own port, which its kernel rendezvous comes from */
  srcPort: number;
  ringSize: number;
}

export interface RepData extends PeerWindow {
  ringSize: number;
  nonce: Buffer;
  /** the passive agent's proof: repMac over the REQ and the REP's first REP_MAC_AT bytes */
  mac: Buffer;
}

/** Where the REP's MAC starts: it covers everything before. */
export const REP_MAC_AT = 36 + NONCE_BYTES;
export const REP_LENGTH = REP_MAC_AT + MAC_BYTES;

export class WireError extends Error {}

function log2(n: number): number {
  return Math.round(Math.log2(n));
}

function ringFromLog2(l: number): number {
  if (l < 12 || l > 26) throw new WireError(`ring size 2^${l} is out of range`);
  return 2 ** l;
}

function writeAddress(buf: Buffer, at: number, address: string): number {
  if (isIPv4(address)) {
    address.split('.').forEach((part, i) => buf.writeUInt8(Number(part), at + i));
    return 4;
  }
  if (!isIPv6(address)) throw new WireError(`not an IP address: ${address}`);
  // Expand '::' and any embedded IPv4 tail into eight groups.
  let text = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const p = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((p[0]! << 8) | p[1]!).toString(16)}:${((p[2]! << 8) | p[3]!).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => buf.writeUInt16BE(parseInt(g, 16), at + 2 * i));
  return 6;
}

function readAddress(buf: Buffer, at: number, family: number): string {
  if (family === 4) return [0, 1, 2, 3].map((i) => buf.readUInt8(at + i)).join('.');
  if (family !== 6) throw new WireError(`address family ${family} is neither 4 nor 6`);
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(buf.readUInt16BE(at + 2 * i));
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return [words[6]! >> 8, words[6]! & 255, words[7]! >> 8, words[7]! & 255].join('.'); // IPv4-mapped
  }
  return new URL(`http://[${words.map((w) => w.toString(16)).join(':')}]`).hostname.slice(1, -1);
}

export function encodeReq(r: ReqData): Buffer {
  const b = Buffer.alloc(REQ_PRIVATE_DATA_MAX);
  b.writeUInt32BE(REQ_MAGIC, 0);
  b.writeUInt32BE(r.sid >>> 0, 4);
  b.writeUInt16BE(r.dstPort, 8);
  b.writeUInt16BE(r.srcPort, 10);
  const family = writeAddress(b, 40, r.dstAddress);
  b.writeUInt8(family, 12);
  b.writeUInt8(log2(r.ringSize), 13);
  b.writeUInt16BE(r.recvCredits, 14);
  b.writeBigUInt64BE(r.ringAddr, 16);
  b.writeUInt32BE(r.ringRkey >>> 0, 24);
  b.writeUInt32BE(r.mailboxRkey >>> 0, 28);
  b.writeBigUInt64BE(r.mailboxAddr, 32);
  return b;
}

export function decodeReq(b: Buffer): ReqData {
  if (b.length < REQ_PRIVATE_DATA_MAX || b.readUInt32BE(0) !== REQ_MAGIC) {
    throw new WireError('not a vtoe REQ (another rdma_cm application, or another vtoe version)');
  }
  return {
    sid: b.readUInt32BE(4),
    dstPort: b.readUInt16BE(8),
    srcPort: b.readUInt16BE(10),
    dstAddress: readAddress(b, 40, b.readUInt8(12)),
    ringSize: ringFromLog2(b.readUInt8(13)),
    recvCredits: b.readUInt16BE(14),
    ringAddr: b.readBigUInt64BE(16),
    ringRkey: b.readUInt32BE(24),
    mailboxRkey: b.readUInt32BE(28),
    mailboxAddr: b.readBigUInt64BE(32),
  };
}

export function encodeRep(r: RepData): Buffer {
  if (r.nonce.length !== NONCE_BYTES || r.mac.length !== MAC_BYTES) throw new WireError('REP nonce or MAC of the wrong size');
  const b = Buffer.alloc(REP_LENGTH);
  b.writeUInt32BE(REP_MAGIC, 0);
  b.writeUInt16BE(r.recvCredits, 4);
  b.writeUInt8(log2(r.ringSize), 6);
  b.writeUInt32BE(r.ringRkey >>> 0, 8);
  b.writeBigUInt64BE(r.ringAddr, 12);
  b.writeBigUInt64BE(r.mailboxAddr, 20);
  b.writeUInt32BE(r.mailboxRkey >>> 0, 28);
  r.nonce.copy(b, 36);
  r.mac.copy(b, REP_MAC_AT);
  return b;
}

export function decodeRep(b: Buffer): RepData {
  if (b.length < REP_LENGTH || b.readUInt32BE(0) !== REP_MAGIC) throw new WireError('not a vtoe REP (or another vtoe version)');
  return {
    recvCredits: b.readUInt16BE(4),
    ringSize: ringFromLog2(b.readUInt8(6)),
    ringRkey: b.readUInt32BE(8),
    ringAddr: b.readBigUInt64BE(12),
    mailboxAddr: b.readBigUInt64BE(20),
    mailboxRkey: b.readUInt32BE(28),
    nonce: Buffer.from(b.subarray(36, REP_MAC_AT)),
    mac: Buffer.from(b.subarray(REP_MAC_AT, REP_LENGTH)),
  };
}

/** A consumer REJ: why the passive agent refused (a vtoe fallback reason code). */
export function encodeRej(reason: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(REJ_MAGIC, 0);
  b.writeUInt32BE(reason, 4);
  return b;
}

/** The reason of a vtoe REJ, or null for any other reject (no agent there, another app). */
export function decodeRej(b: Buffer): number | null {
  if (b.length < 8 || b.readUInt32BE(0) !== REJ_MAGIC) return null;
  return b.readUInt32BE(4);
}

/** Where one side's receive stream stands, as a resume REQ or REP tells the other. */
export interface StreamPosition {
  /** resumes of this connection so far, this one included: a replayed message is stale */
  generation: number;
  /** bytes of the peer's stream delivered here: the peer sends again from there */
  delivered: bigint;
  /** bytes of it the process read: the peer's ring is free up to there */
  consumed: bigint;
  /** the peer's FIN, and its close, arrived here (it need not send them again) */
  haveFin: boolean;
  haveClose: boolean;
}

export interface ResumeReqData extends StreamPosition {
  token: Buffer;
  /** the requesting end's side (0: it connected first): both ends of a connection on one host share the token */
  side: 0 | 1;
  mac: Buffer;
}

export interface ResumeRepData extends StreamPosition {
  nonce: Buffer;
  mac: Buffer;
}

/** Where a resume REQ's or REP's MAC starts: it covers everything before. */
export const RESUME_MAC_AT = 40;
export const RESUME_LENGTH = RESUME_MAC_AT + MAC_BYTES;
export const TOKEN_BYTES = NONCE_BYTES;

function writePosition(b: Buffer, p: StreamPosition, at: number): void {
  b.writeUInt16BE(p.generation & 0xffff, 4);
  b.writeUInt16BE((p.haveFin ? 1 : 0) | (p.haveClose ? 2 : 0), 6);
  b.writeBigUInt64BE(p.delivered, at);
  b.writeBigUInt64BE(p.consumed, at + 8);
}

function readPosition(b: Buffer, at: number): StreamPosition {
  const flags = b.readUInt16BE(6);
  const p = { generation: b.readUInt16BE(4), delivered: b.readBigUInt64BE(at), consumed: b.readBigUInt64BE(at + 8),
    haveFin: (flags & 1) !== 0, haveClose: (flags & 2) !== 0 };
  if (p.consumed > p.delivered) throw new WireError('a resume says more was read than delivered');
  return p;
}

/** Magic, position, token, MAC: 56 bytes, all a REQ may carry. */
export function encodeResumeReq(r: ResumeReqData): Buffer {
  if (r.token.length !== TOKEN_BYTES || r.mac.length !== MAC_BYTES) throw new WireError('resume token or MAC of the wrong size');
  const b = Buffer.alloc(RESUME_LENGTH);
  b.writeUInt32BE(RESUME_REQ_MAGIC, 0);
  r.token.copy(b, 8);
  writePosition(b, r, 24);
  if (r.side === 1) b.writeUInt16BE(b.readUInt16BE(6) | 4, 6);
  r.mac.copy(b, RESUME_MAC_AT);
  return b;
}

/** The resume REQ in private data, or null for a first REQ (or anything else). */
export function decodeResumeReq(b: Buffer): ResumeReqData | null {
  if (b.length < RESUME_LENGTH || b.readUInt32BE(0) !== RESUME_REQ_MAGIC) return null;
  return { ...readPosition(b, 24), token: Buffer.from(b.subarray(8, 24)), side: (b.readUInt16BE(6) & 4) ? 1 : 0,
    mac: Buffer.from(b.subarray(RESUME_MAC_AT, RESUME_LENGTH)) };
}

export function encodeResumeRep(r: ResumeRepData): Buffer {
  if (r.nonce.length !== NONCE_BYTES || r.mac.length !== MAC_BYTES) throw new WireError('resume nonce or MAC of the wrong size');
  const b = Buffer.alloc(RESUME_LENGTH);
  b.writeUInt32BE(RESUME_REP_MAGIC, 0);
  writePosition(b, r, 8);
  r.nonce.copy(b, 24);
  r.mac.copy(b, RESUME_MAC_AT);
  return b;
}

export function decodeResumeRep(b: Buffer): ResumeRepData {
  if (b.length < RESUME_LENGTH || b.readUInt32BE(0) !== RESUME_REP_MAGIC) throw new WireError('not a vtoe resume REP');
  return { ...readPosition(b, 8), nonce: Buffer.from(b.subarray(24, 40)), mac: Buffer.from(b.subarray(RESUME_MAC_AT, RESUME_LENGTH)) };
}
