// kernelHasTcpPorts: the agent's check that a remote connection's kernel rendezvous exists.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { kernelHasTcpPorts } from '../src/agent/kernel-tcp.js';

describe('kernelHasTcpPorts', () => {
  let server: Server;
  let client: Socket;
  afterAll(() => {
    client?.destroy();
    server?.close();
  });

  it('finds a connection by its two ports, in either table, and nothing else', async () => {
    server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    client = connect(port, '127.0.0.1');
    await new Promise<void>((r) => client.on('connect', r));
    const clientPort = client.localPort!;
    expect(kernelHasTcpPorts(port, clientPort)).toBe(true); // the server's end
    expect(kernelHasTcpPorts(clientPort, port)).toBe(true); // the client's end
    expect(kernelHasTcpPorts(port, clientPort === 65535 ? 1 : clientPort + 1)).toBe(false);
    client.destroy();
  });

  it('reads what /proc/net says, and a missing table is no error', () => {
    expect(kernelHasTcpPorts(1, 2, '/nonexistent')).toBe(false);
  });
});
