// `vtoe run`: start a program with the shim, using the standing agent when one answers and an
// embedded agent otherwise. `--mode ipoib` runs the program untouched, on kernel TCP.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { adminSocketPath, resolveConfig, type ResolvedConfig } from './config.js';
import { Agent } from './agent/agent.js';
import { adminRequest } from './agent/admin.js';
import { kernelEnv, offloadEnv } from './agent/preload-env.js';
import type { StatsSnapshot } from './agent/stats.js';

export type RunMode = 'offload' | 'ipoib';

export interface RunOptions {
  mode: RunMode;
  /** Print the agent's statistics to stderr when the program ends. */
  printStats?: boolean;
  config?: Partial<ResolvedConfig>;
}

/** True when an agent answers on the admin channel next to `agentSocket`. */
export async function agentAnswers(agentSocket: string): Promise<boolean> {
  try {
    await adminRequest(adminSocketPath(agentSocket), 'config');
    return true;
  } catch {
    return false;
  }
}

export async function runProgram(argv: string[], opts: RunOptions): Promise<number> {
  if (argv.length === 0) throw new Error('vtoe run: no program given (usage: vtoe run [--mode offload|ipoib] -- CMD ...)');
  if (opts.mode === 'ipoib') return spawnAndWait(argv, kernelEnv());

  const config = resolveConfig(process.env, opts.config ?? {});
  let agent: Agent | null = null;
  let socketPath = config.agentSocket;
  if (!(await agentAnswers(socketPath))) {
    socketPath = join(dirname(config.agentSocket), `run-${process.pid}.sock`);
    agent = await Agent.start({ config: { ...opts.config, agentSocket: socketPath } });
  }
  try {
    const code = await spawnAndWait(argv, offloadEnv(socketPath));
    if (opts.printStats) {
      const stats = agent ? agent.stats() : await adminRequest<StatsSnapshot>(adminSocketPath(socketPath), 'stats');
      process.stderr.write(`${JSON.stringify(stats, null, 2)}\n`);
    }
    return code;
  } finally {
    await agent?.stop();
  }
}

function spawnAndWait(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: 'inherit' });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const sig of signals) process.on(sig, forward);
    const cleanup = () => { for (const sig of signals) process.off(sig, forward); };
    child.once('error', (err) => { cleanup(); reject(err); });
    child.once('exit', (code, signal) => {
      cleanup();
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
