// What the kernel's TCP table of this network namespace holds, read from /proc/net/tcp{,6}.
// Used rarely (for remote connections that waited long), so a linear read is fine.
import { readFileSync } from 'node:fs';

/** One socket of the table: its ports (any address), state (0x0A: LISTEN) and inode. */
export interface KernelTcpRow {
  localPort: number;
  remotePort: number;
  state: number;
  /** 0 for a connection in a listener's accept queue, not yet accepted by any process */
  inode: number;
}

export const TCP_LISTEN = 0x0a;

/** Every TCP socket here, IPv4 then IPv6; a table that cannot be read (no IPv6) has none. */
export function* kernelTcpRows(procNet = '/proc/net'): Generator<KernelTcpRow> {
  const port = (field: string): number => parseInt(field.slice(field.lastIndexOf(':') + 1), 16);
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`${procNet}/${file}`, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      yield { localPort: port(f[1]!), remotePort: port(f[2]!), state: parseInt(f[3]!, 16), inode: Number(f[9]) };
    }
  }
}

/** Whether any TCP socket here has this local and remote port (any address, any state). */
export function kernelHasTcpPorts(localPort: number, remotePort: number, procNet = '/proc/net'): boolean {
  for (const r of kernelTcpRows(procNet)) if (r.localPort === localPort && r.remotePort === remotePort) return true;
  return false;
}

/**
 * The inode of each TCP socket here by `localPort:remotePort` (any address).  Two clients on
 * other hosts may use the same port: the smallest inode of the sockets with those ports, so
 * that one accepted does not stand for another still queued.  One read for many look-ups.
 */
export function kernelTcpInodes(procNet = '/proc/net'): Map<string, number> {
  const inodes = new Map<string, number>();
  for (const r of kernelTcpRows(procNet)) {
    const key = `${r.localPort}:${r.remotePort}`;
    inodes.set(key, Math.min(inodes.get(key) ?? r.inode, r.inode));
  }
  return inodes;
}
