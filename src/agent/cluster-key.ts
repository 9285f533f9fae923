// How agents prove to each other that they belong to one cluster on the verbs fabric.
//
// The passive agent answers a REQ with a fresh 16-byte nonce and a MAC over the REQ and its REP;
// the active agent checks it, and proves itself with a MAC over that nonce and its REQ, sent as
// the first message on the new QP (native/verbs_wire.h).  The key is the cluster's shared secret
// (VTOE_CLUSTER_KEY_FILE).  Without one, each agent makes a random key of its own, which only
// it knows: connections within this host still work, no other host gets in; or, where the
// operator declared the fabric trusted (VTOE_FABRIC_TRUSTED=1), a well-known key that proves
// nothing and lets every host in.
//
// The REQ has no room left for a nonce of the active side (rdma_cm gives it 56 bytes, all in
// use); what it carries (a SID never reused while live, ring addresses under ASLR, fresh keys)
// makes each REQ unique, and the REP's MAC covers all of it, so no old REP answers a new REQ.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { ResolvedConfig } from '../config.js';
import { ConfigError } from '../errors.js';

export const MAC_BYTES = 16;
export const NONCE_BYTES = 16;
export const MIN_KEY_BYTES = 32;

export type AuthMode = 'cluster-key' | 'trusted-fabric' | 'this-host';

export interface ClusterAuth {
  mode: AuthMode;
  key: Buffer;
  /** whether verbs connections to and from other hosts are allowed */
  crossHost: boolean;
}

const TRUSTED_FABRIC_KEY = Buffer.from('vtoe: no cluster key, the operator declared the fabric trusted');

/** The key this agent proves and checks with; throws ConfigError for a key file it must not use. */
export function loadClusterAuth(config: Pick<ResolvedConfig, 'clusterKeyFile' | 'fabricTrusted'>,
  euid = process.geteuid?.() ?? 0): ClusterAuth {
  const file = config.clusterKeyFile;
  if (!file) {
    return config.fabricTrusted
      ? { mode: 'trusted-fabric', key: TRUSTED_FABRIC_KEY, crossHost: true }
      : { mode: 'this-host', key: randomBytes(32), crossHost: false };
  }
  const fix = `make one with: head -c 32 /dev/urandom > ${file} && chmod 600 ${file}, and copy it to every host`;
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    throw new ConfigError(`VTOE_CLUSTER_KEY_FILE ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}; ${fix}`);
  }
  if (!st.isFile()) throw new ConfigError(`VTOE_CLUSTER_KEY_FILE ${file} is not a regular file; ${fix}`);
  if (st.uid !== euid && st.uid !== 0) {
    throw new ConfigError(`VTOE_CLUSTER_KEY_FILE ${file} belongs to uid ${st.uid}, not to the agent's user (${euid}) or root`);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new ConfigError(`VTOE_CLUSTER_KEY_FILE ${file} is readable or writable by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 ${file}`);
  }
  const key = readFileSync(file);
  if (key.length < MIN_KEY_BYTES) {
    throw new ConfigError(`VTOE_CLUSTER_KEY_FILE ${file} holds ${key.length} bytes, fewer than ${MIN_KEY_BYTES}; ${fix}`);
  }
  return { mode: 'cluster-key', key, crossHost: true };
}

function mac(key: Buffer, label: string, ...parts: Buffer[]): Buffer {
  const h = createHmac('sha256', key).update(label);
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, MAC_BYTES);
}

/** The passive agent's proof: over the REQ it answers and its REP up to the MAC. */
export function repMac(key: Buffer, req: Buffer, repSigned: Buffer): Buffer {
  return mac(key, 'vtoe-1 rep', req, repSigned);
}

/** The active agent's proof: over the passive side's nonce and its own REQ. */
export function rtuMac(key: Buffer, nonce: Buffer, req: Buffer): Buffer {
  return mac(key, 'vtoe-1 rtu', nonce, req);
}

/** A resume REQ's proof (resuming a connection whose QP failed): over the REQ up to the MAC. */
export function resumeReqMac(key: Buffer, reqSigned: Buffer): Buffer {
  return mac(key, 'vtoe-1 resume req', reqSigned);
}

/** Its answer's proof: over the resume REQ and the REP up to the MAC. */
export function resumeRepMac(key: Buffer, req: Buffer, repSigned: Buffer): Buffer {
  return mac(key, 'vtoe-1 resume rep', req, repSigned);
}

export function macEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}
