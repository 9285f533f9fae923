// How agents prove the cluster key (src/agent/cluster-key.ts): which key file is used, which is
// refused and why, and that each proof binds what it claims to.
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadClusterAuth, macEqual, repMac, rtuMac } from '../src/agent/cluster-key.js';
import { ConfigError } from '../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'vtoe-key-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keyFile(name: string, bytes: Buffer, mode = 0o600): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  chmodSync(path, mode);
  return path;
}

describe('loadClusterAuth', () => {
  it('without a key file: a random key of this agent only, and no other host', () => {
    const a = loadClusterAuth({ clusterKeyFile: '', fabricTrusted: false });
    const b = loadClusterAuth({ clusterKeyFile: '', fabricTrusted: false });
    expect(a.mode).toBe('this-host');
    expect(a.crossHost).toBe(false);
    expect(a.key.equals(b.key)).toBe(false);
  });

  it('a trusted fabric: one well-known key, every host', () => {
    const a = loadClusterAuth({ clusterKeyFile: '', fabricTrusted: true });
    expect(a).toMatchObject({ mode: 'trusted-fabric', crossHost: true });
    expect(a.key.equals(loadClusterAuth({ clusterKeyFile: '', fabricTrusted: true }).key)).toBe(true);
  });

  it('a key file of 32 bytes, mode 0600: the cluster key, whatever VTOE_FABRIC_TRUSTED says', () => {
    const bytes = Buffer.alloc(32, 7);
    const a = loadClusterAuth({ clusterKeyFile: keyFile('good', bytes), fabricTrusted: true });
    expect(a).toMatchObject({ mode: 'cluster-key', crossHost: true });
    expect(a.key.equals(bytes)).toBe(true);
  });

  it.each([
    ['readable by others', () => keyFile('open', Buffer.alloc(32, 1), 0o644), /chmod 600/],
    ['readable by the group', () => keyFile('group', Buffer.alloc(32, 1), 0o640), /chmod 600/],
    ['too short', () => keyFile('short', Buffer.alloc(16, 1)), /16 bytes, fewer than 32.*head -c 32/],
    ['missing', () => join(dir, 'none'), /ENOENT.*head -c 32/],
    ['a directory', () => dir, /not a regular file/],
  ])('refuses a key file %s, saying what to do', (_what, make, message) => {
    expect(() => loadClusterAuth({ clusterKeyFile: make(), fabricTrusted: false })).toThrow(ConfigError);
    expect(() => loadClusterAuth({ clusterKeyFile: make(), fabricTrusted: false })).toThrow(message);
  });

  const root = process.geteuid?.() === 0;
  if (!root) console.warn('cluster-key: the other-owner case needs root to chown a file; skipped');
  it.skipIf(!root)("refuses a key file of another user (not root's): they could change it", () => {
    const path = keyFile('theirs', Buffer.alloc(32, 2));
    chownSync(path, 4242, 4242);
    expect(() => loadClusterAuth({ clusterKeyFile: path, fabricTrusted: false })).toThrow(/belongs to uid 4242/);
    expect(loadClusterAuth({ clusterKeyFile: path, fabricTrusted: false }, 4242).mode).toBe('cluster-key');
  });
});

describe('proofs', () => {
  const key = Buffer.alloc(32, 9);
  const req = Buffer.alloc(56, 1);
  const rep = Buffer.alloc(52, 2);
  const nonce = Buffer.alloc(16, 3);

  it('are 16 bytes, and change with every byte they cover and with the key', () => {
    const m = repMac(key, req, rep);
    expect(m.length).toBe(16);
    for (const [k, q, p] of [[Buffer.alloc(32, 8), req, rep], [key, Buffer.concat([req.subarray(1), Buffer.alloc(1, 9)]), rep],
      [key, req, Buffer.alloc(52, 4)]] as const) {
      expect(macEqual(repMac(k, q, p), m)).toBe(false);
    }
    expect(macEqual(repMac(key, req, rep), m)).toBe(true);
  });

  it('the two directions never stand for each other', () => {
    // A REP's proof replayed as the active side's (or the reverse) does not verify.
    expect(macEqual(rtuMac(key, nonce, req), repMac(key, nonce, req))).toBe(false);
    expect(macEqual(rtuMac(key, nonce, req), rtuMac(key, Buffer.alloc(16, 4), req))).toBe(false);
  });
});
