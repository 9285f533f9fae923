// `vtoe demo`: the same ping-pong and stream programs through offload and through kernel TCP,
// side by side, with an embedded agent. Nothing needs to be installed or running.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from './agent/agent.js';
import { compareOffloadVsTcp } from './bench/compare.js';
import { formatComparison } from './bench/format.js';

export interface DemoOptions {
  reps: number;
  ppIters: number;
  streamSeconds: number;
  onProgress?: (line: string) => void;
}

export async function runDemo(opts: DemoOptions): Promise<string> {
  // A fresh private directory (not a guessable name another user could take first), removed after.
  const dir = mkdtempSync(join(tmpdir(), 'vtoe-demo-'));
  let agent: Agent;
  try {
    agent = await Agent.start({ socketPath: join(dir, 'agent.sock') });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  try {
    const comparison = await compareOffloadVsTcp({
      agentSocket: agent.socketPath, reps: opts.reps, ppSize: 64, ppIters: opts.ppIters,
      streamSize: 65536, streamSeconds: opts.streamSeconds, onProgress: opts.onProgress,
      agentStats: () => agent.stats(),
    });
    const stats = agent.stats();
    const proof = `agent: ${stats.offloaded} connections offloaded, ${stats.fallback.total} fell back`
      + ` (${JSON.stringify(stats.fallback.reasons)}), ${stats.bytes.sent} bytes through shared rings`;
    return `${formatComparison(comparison, agent.memoryPerConnection())}\n${proof}`;
  } finally {
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
