// Whether the kernel has a TCP socket listening on a port (any address), from /proc/net/tcp{,6}.
// A program's listener reaches the agent just before its kernel listen(): tests that take the
// agent's registry as a server's ready signal also wait for this, or a client may be refused.
import { readFileSync } from 'node:fs';

const TCP_LISTEN = '0A';

export function kernelListens(port: number): boolean {
  const want = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3 && f[1]!.endsWith(want) && f[3] === TCP_LISTEN) return true;
    }
  }
  return false;
}
