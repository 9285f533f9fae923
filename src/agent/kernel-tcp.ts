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
