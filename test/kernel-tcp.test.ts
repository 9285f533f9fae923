// kernelHasTcpPorts: the agent's check that a remote connection's kernel rendezvous exists;
// kernelTcpInodes: whether a process accepted it (the late-fallback scan of the verbs fabric).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { kernelHasTcpPorts, kernelTcpInodes, kernelTcpRows, TCP_LISTEN } from '../src/agent/kernel-tcp.js';

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

describe('kernelTcpInodes', () => {
  it('shows a connection in the accept queue with inode 0, and one a process accepted with its inode', async () => {
    // A listener that accepts only when told: Node's own servers accept at once.
    const py = spawn('python3', ['-c', [
      'import socket, sys',
      'l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4)',
      'print(l.getsockname()[1], flush=True)',
      'sys.stdin.readline(); c, _ = l.accept(); print("accepted", flush=True)',
      'sys.stdin.readline()',
    ].join('\n')], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: py.stdout! })[Symbol.asyncIterator]();
    const next = async (): Promise<string> => (await lines.next()).value as string;
    const port = Number(await next());
    const client = connect(port, '127.0.0.1');
    try {
      await new Promise<void>((r) => client.on('connect', r));
      const key = `${port}:${client.localPort!}`;
      expect([...kernelTcpRows()].some((r) => r.localPort === port && r.remotePort === 0 && r.state === TCP_LISTEN)).toBe(true);
      expect(kernelTcpInodes().get(key)).toBe(0); // queued: no process holds it
      expect(kernelTcpInodes().get(`${client.localPort!}:${port}`)).toBeGreaterThan(0); // the client's
      py.stdin!.write('\n');
      expect(await next()).toBe('accepted');
      expect(kernelTcpInodes().get(key)).toBeGreaterThan(0);
      expect(kernelTcpInodes('/nonexistent').size).toBe(0);
    } finally {
      client.destroy();
      py.kill();
    }
  });
});
