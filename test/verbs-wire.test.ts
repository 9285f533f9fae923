// The verbs fabric's CM private data: what one agent encodes, another decodes, and anything
// else is refused.
import { describe, expect, it } from 'vitest';
import { resumeRepMac, resumeReqMac } from '../src/agent/cluster-key.js';
import {
  decodeRej, decodeRep, decodeReq, decodeResumeRep, decodeResumeReq, encodeRej, encodeRep, encodeReq, encodeResumeRep,
  encodeResumeReq, REP_LENGTH, REP_MAC_AT, REQ_PRIVATE_DATA_MAX, RESUME_MAC_AT, WireError, type ReqData,
} from '../src/agent/verbs-wire.js';

const window = {
  ringAddr: 0x7f12_3456_7000n, ringRkey: 0x1234, mailboxAddr: 0x5555_0000_1230n, mailboxRkey: 0xfedc_ba98,
  recvCredits: 64,
};

const req: ReqData = { ...window, sid: 42, dstAddress: '192.0.2.1', dstPort: 5001, srcPort: 40000, ringSize: 262144 };

describe('REQ private data', () => {
  it('fits rdma_cm\'s 56 bytes and round-trips', () => {
    const b = encodeReq(req);
    expect(b.length).toBe(REQ_PRIVATE_DATA_MAX);
    expect(decodeReq(b)).toEqual(req);
  });

  it.each([
    ['::1', '::1'],
    ['fe80::1:2', 'fe80::1:2'],
    ['2001:db8::ff00:42:8329', '2001:db8::ff00:42:8329'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
  ])('carries the IPv6 destination %s', (address, expected) => {
    expect(decodeReq(encodeReq({ ...req, dstAddress: address })).dstAddress).toBe(expected);
  });

  it('refuses data from another application or version', () => {
    const b = encodeReq(req);
    b.writeUInt32BE(0x12345678, 0);
    expect(() => decodeReq(b)).toThrow(WireError);
    expect(() => decodeReq(Buffer.alloc(20))).toThrow(WireError);
  });

  it('refuses a ring size outside 4 KiB..64 MiB', () => {
    const b = encodeReq(req);
    b.writeUInt8(30, 13);
    expect(() => decodeReq(b)).toThrow(/out of range/);
  });
});

describe('REP and REJ private data', () => {
  const auth = { nonce: Buffer.alloc(16, 0xab), mac: Buffer.alloc(16, 0xcd) };

  it('REP round-trips the passive window, its nonce and MAC, within rdma_cm\'s 196 bytes', () => {
    const b = encodeRep({ ...window, ringSize: 4096, ...auth });
    expect(b.length).toBe(REP_LENGTH);
    expect(REP_LENGTH).toBeLessThanOrEqual(196);
    expect(b.subarray(REP_MAC_AT).equals(auth.mac)).toBe(true);
    expect(decodeRep(b)).toEqual({ ...window, ringSize: 4096, ...auth });
  });

  it('a REP cut short (an older vtoe, without the proof) is refused', () => {
    const b = encodeRep({ ...window, ringSize: 4096, ...auth });
    expect(() => decodeRep(b.subarray(0, REP_MAC_AT))).toThrow(WireError);
    expect(() => encodeRep({ ...window, ringSize: 4096, nonce: Buffer.alloc(8), mac: auth.mac })).toThrow(WireError);
  });

  it('REP from something else is refused', () => {
    expect(() => decodeRep(encodeReq(req))).toThrow(WireError);
  });

  it('a vtoe REJ carries its reason; any other REJ has none', () => {
    expect(decodeRej(encodeRej(2))).toBe(2);
    expect(decodeRej(Buffer.alloc(0))).toBeNull();
    expect(decodeRej(Buffer.from('not vtoe'))).toBeNull();
  });
});

describe('resume REQ and REP private data', () => {
  const position = { generation: 3, delivered: 0x1_0000_0001n, consumed: 0x1_0000_0000n, haveFin: true, haveClose: false };
  const token = Buffer.alloc(16, 7);

  it('round-trips within the 56 bytes a REQ may carry, and a first REQ is not one', () => {
    for (const side of [0, 1] as const) {
      const b = encodeResumeReq({ ...position, token, side, mac: Buffer.alloc(16, 9) });
      expect(b.length).toBeLessThanOrEqual(REQ_PRIVATE_DATA_MAX);
      expect(decodeResumeReq(b)).toEqual({ ...position, token, side, mac: Buffer.alloc(16, 9) });
    }
    expect(decodeResumeReq(encodeReq(req))).toBeNull();
    const rep = { ...position, haveFin: false, haveClose: true, nonce: Buffer.alloc(16, 1), mac: Buffer.alloc(16, 2) };
    expect(decodeResumeRep(encodeResumeRep(rep))).toEqual(rep);
  });

  it('refuses a position that read more than it delivered, and anything that is not a resume REP', () => {
    const b = encodeResumeReq({ ...position, consumed: position.delivered + 1n, token, side: 0, mac: Buffer.alloc(16) });
    expect(() => decodeResumeReq(b)).toThrow(WireError);
    expect(() => decodeResumeRep(encodeRej(1))).toThrow(WireError);
    expect(() => decodeResumeRep(b)).toThrow(WireError); // a REQ is not a REP
  });

  it('each MAC covers what it must: a changed position or another REQ no longer proves the key', () => {
    const key = Buffer.alloc(32, 5);
    const a = encodeResumeReq({ ...position, token, side: 0, mac: Buffer.alloc(16) });
    const b = encodeResumeReq({ ...position, delivered: position.delivered + 1n, token, side: 0, mac: Buffer.alloc(16) });
    expect(resumeReqMac(key, a.subarray(0, RESUME_MAC_AT))).not.toEqual(resumeReqMac(key, b.subarray(0, RESUME_MAC_AT)));
    const rep = encodeResumeRep({ ...position, nonce: Buffer.alloc(16, 1), mac: Buffer.alloc(16) }).subarray(0, RESUME_MAC_AT);
    expect(resumeRepMac(key, a, rep)).not.toEqual(resumeRepMac(key, b, rep));
  });
});
