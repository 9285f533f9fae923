// `vtoe demo`: the same ping-pong and stream programs through offload and through kernel TCP,
// side by side, with an embedded agent. Nothing needs to be installed or running.
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
  const agent = await Agent.start({ socketPath: join(tmpdir(), `vtoe-demo-${process.pid}`, 'agent.sock') });
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
  }
}
