// tcpListening: the agent's check that a server without the shim listens where a client
// connects (so the client may connect there without asking for a while), read with sock_diag.
import { createServer, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/bench/bench-command.js';
import { tcpListening, type SockAddr } from '../src/native.js';

const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
});

async function listenAt(host: string, ipv6Only = false): Promise<number> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen({ port: 0, host, ipv6Only }, resolve));
  return (server.address() as { port: number }).port;
}

const v4 = (address: string, port: number): SockAddr => ({ family: 4, address, port, scopeId: 0 });
const v6 = (address: string, port: number): SockAddr => ({ family: 6, address, port, scopeId: 0 });

describe('tcpListening', () => {
  it('finds a listener at its own address and port, and nowhere else', async () => {
    const port = await listenAt('127.0.0.1');
    expect(tcpListening(v4('127.0.0.1', port))).toBe(true);
    expect(tcpListening(v4('127.0.0.2', port))).toBe(false);
    expect(tcpListening(v6('::ffff:127.0.0.1', port))).toBe(true); // the same address, v4-mapped
    expect(tcpListening(v4('127.0.0.1', await freePort()))).toBe(false); // nothing listens there
  });

  it('counts a wildcard listener for every address of its family, and an IPv6 wildcard for IPv4', async () => {
    const any4 = await listenAt('0.0.0.0');
    expect(tcpListening(v4('127.0.0.1', any4))).toBe(true);
    expect(tcpListening(v4('127.0.0.9', any4))).toBe(true);
    const any6 = await listenAt('::');
    expect(tcpListening(v6('::1', any6))).toBe(true);
    expect(tcpListening(v4('127.0.0.1', any6))).toBe(true);
  });

  it('does not count an IPv6 listener at one address for IPv4 destinations', async () => {
    const port = await listenAt('::1', true);
    expect(tcpListening(v6('::1', port))).toBe(true);
    expect(tcpListening(v4('127.0.0.1', port))).toBe(false);
  });

  it('refuses arguments that name no destination', () => {
    expect(() => tcpListening({ family: 5 as 4, address: '127.0.0.1', port: 80, scopeId: 0 })).toThrow(TypeError);
    expect(() => tcpListening(v4('::1', 80))).toThrow(TypeError);
    expect(() => tcpListening(v4('127.0.0.1', 0))).toThrow(RangeError);
  });
});
