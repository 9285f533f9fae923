// Destinations held on kernel TCP, through the shim and a real agent: a client of a server
// started without the shim asks the agent once per hold and then connects as a plain program
// would (no bind, no round trip), every such connection still counted; a client that tries
// before its server is up is never held, so it is offloaded as soon as the server listens.
import { describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent/agent.js';
import { offloadEnv } from '../src/agent/preload-env.js';
import { freePort } from '../src/bench/bench-command.js';
import type { ResolvedConfig } from '../src/config.js';
import { toolPath } from '../src/paths.js';
import { startProc } from './helpers/proc.js';
import { startPingPongAgent } from './helpers/pingpong-agent.js';
import { scratchPerTest } from './helpers/scratch.js';

const scratch = scratchPerTest();

const startAgent = (config: Partial<ResolvedConfig>): Promise<Agent> => startPingPongAgent(scratch, config);

// Connects to argv[1] twice: the first attempt finds nothing listening, the second (after "go"
// on stdin) a vtoe-pingpong server, with one 64-byte round trip in its protocol (a 16-byte
// header: mode 1, size 64, 1 round trip).
const RETRYING_CLIENT = `
import socket, struct, sys
port = int(sys.argv[1])
def attempt():
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return "REFUSED"
    s.sendall(struct.pack(">IIQ", 1, 64, 1) + b"x" * 64)
    got = b""
    while len(got) < 64:
        chunk = s.recv(64 - len(got))
        if not chunk:
            return "SHORT"
        got += chunk
    s.close()
    return "ECHOED" if got == b"x" * 64 else "WRONG"
print("FIRST", attempt(), flush=True)
sys.stdin.readline()
print("SECOND", attempt(), flush=True)
`;

describe('destinations held on kernel TCP', () => {
  it('a client of a server without the shim asks the agent once, and every connection is still counted', async () => {
    const a = await startAgent({ kernelHoldMs: 600_000 });
    const before = a.stats();
    const tool = toolPath('vtoe-pingpong');
    const server = startProc(tool, ['server', '--port', '0', '--count', '300'], process.env); // no shim
    const port = (await server.waitLine(/^READY (\d+)$/))[1]!;
    const client = startProc(tool, ['client', '--port', port, '--mode', 'connect', '--size', '64',
      '--iters', '290', '--warmup', '10'], offloadEnv(a.socketPath));
    await client.waitLine(/^\{.*"mode":"connect".*\}$/, 120_000);
    expect(await client.exited).toEqual({ code: 0, signal: null }); // 3 would be a byte wrong
    expect(await server.exited).toEqual({ code: 0, signal: null });
    // the client told how many it made without asking when it exited
    await a.until((x) => (x.stats().fallback.reasons['peer-not-offloaded'] ?? 0) - (before.fallback.reasons['peer-not-offloaded'] ?? 0) >= 300);
    const s = a.stats();
    expect((s.fallback.reasons['peer-not-offloaded'] ?? 0) - (before.fallback.reasons['peer-not-offloaded'] ?? 0)).toBe(300);
    expect((s.events.fallback ?? 0) - (before.events.fallback ?? 0)).toBe(1); // one answer, 299 not asked
    expect(s.offloaded).toBe(before.offloaded);
  }, 120_000);

  it('a server under the shim accepts plain clients without asking the agent, and counts them', async () => {
    const a = await startAgent({});
    const before = a.stats();
    const tool = toolPath('vtoe-pingpong');
    const server = startProc(tool, ['server', '--port', '0', '--count', '200'], offloadEnv(a.socketPath));
    const port = (await server.waitLine(/^READY (\d+)$/))[1]!;
    const client = startProc(tool, ['client', '--port', port, '--mode', 'connect', '--size', '64',
      '--iters', '190', '--warmup', '10'], process.env); // no shim
    await client.waitLine(/^\{.*"mode":"connect".*\}$/, 120_000);
    expect(await client.exited).toEqual({ code: 0, signal: null });
    expect(await server.exited).toEqual({ code: 0, signal: null });
    await a.until((x) => x.stats().kernelAccepted - before.kernelAccepted >= 200);
    const s = a.stats();
    expect(s.kernelAccepted - before.kernelAccepted).toBe(200);
    expect((s.events.fallback ?? 0) - (before.events.fallback ?? 0)).toBe(0); // no ACCEPT answered
  }, 120_000);

  it('a client that tries before its server listens is offloaded once the server with the shim is up', async () => {
    const a = await startAgent({ kernelHoldMs: 600_000 });
    const env = offloadEnv(a.socketPath);
    const port = await freePort(); // nothing listens there yet
    const client = startProc('python3', ['-c', RETRYING_CLIENT, String(port)], env);
    await client.waitLine(/^FIRST REFUSED$/);
    const server = startProc(toolPath('vtoe-pingpong'), ['server', '--port', String(port), '--count', '1'], env);
    await server.waitLine(/^READY \d+$/);
    client.child.stdin!.end('go\n');
    await client.waitLine(/^SECOND ECHOED$/);
    expect(await client.exited).toEqual({ code: 0, signal: null });
    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(a.stats().offloaded).toBe(1);
    expect(a.stats().fallback.reasons['peer-not-offloaded']).toBe(1); // the refused attempt
  }, 60_000);
});
