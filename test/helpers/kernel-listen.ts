// Whether the kernel has a TCP socket listening on a port (any address).  A program's listener
// reaches the agent just before its kernel listen(): tests that take the agent's registry as a
// server's ready signal also wait for this, or a client may be refused.
import { kernelTcpRows, TCP_LISTEN } from '../../src/agent/kernel-tcp.js';

export function kernelListens(port: number): boolean {
  for (const r of kernelTcpRows()) if (r.localPort === port && r.state === TCP_LISTEN) return true;
  return false;
}
