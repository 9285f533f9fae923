// What the kernel's TCP table of this network namespace holds, read from /proc/net/tcp{,6}.
// Used rarely (for remote connections that waited long), so a linear read is fine.
import { readFileSync } from 'node:fs';

/** Whether any TCP socket here has this local and remote port (any address, any state). */
export function kernelHasTcpPorts(localPort: number, remotePort: number, procNet = '/proc/net'): boolean {
  const want = `:${localPort.toString(16).toUpperCase().padStart(4, '0')}`;
  const peer = `:${remotePort.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`${procNet}/${file}`, 'latin1');
    } catch {
      continue; // no IPv6 here
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3 && f[1]!.endsWith(want) && f[2]!.endsWith(peer)) return true;
    }
  }
  return false;
}

/**
 * The inode of each TCP socket here by `localPort:remotePort` (any address): 0 for one in a
 * listener's accept queue, not yet accepted by any process.  Two clients on other hosts may
 * use the same port: the smallest inode of the sockets with those ports, so that one accepted
 * does not stand for another still queued.  One read of the table for many look-ups.
 */
export function kernelTcpInodes(procNet = '/proc/net'): Map<string, number> {
  const inodes = new Map<string, number>();
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
      const local = parseInt(f[1]!.slice(f[1]!.lastIndexOf(':') + 1), 16);
      const remote = parseInt(f[2]!.slice(f[2]!.lastIndexOf(':') + 1), 16);
      const key = `${local}:${remote}`;
      const inode = Number(f[9]);
      inodes.set(key, Math.min(inodes.get(key) ?? inode, inode));
    }
  }
  return inodes;
}
