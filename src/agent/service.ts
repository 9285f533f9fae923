// The standing agent as a service: started, announced on stderr (the journal, under systemd)
// and to a service manager that asked (systemd's readiness protocol: Type=notify), then stopped
// by SIGINT or SIGTERM after at most its drain time.
import type { ResolvedConfig } from '../config.js';
import { notifyService } from '../native.js';
import { Agent } from './agent.js';

export async function serveAgent(overrides: Partial<ResolvedConfig>): Promise<number> {
  const agent = await Agent.start({ config: overrides });
  process.stderr.write(`vtoe agent: listening on ${agent.socketPath} (admin ${agent.adminPath})\n`);
  // MAINPID: under a wrapper (bin/vtoe is a shell script that execs node, so this is the pid
  // systemd started, but a site's own wrapper may not exec).
  tellManager(`READY=1\nMAINPID=${process.pid}\nSTATUS=listening on ${agent.socketPath}`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  tellManager(`STOPPING=1\nSTATUS=draining for at most ${agent.config.drainMs} ms`);
  await agent.stop(agent.config.drainMs);
  return 0;
}

/** A manager that cannot be told is its problem (it will time the start out), not the agent's. */
function tellManager(message: string): void {
  try {
    notifyService(message);
  } catch (err) {
    process.stderr.write(`vtoe agent: cannot notify the service manager at $NOTIFY_SOCKET: ${(err as Error).message}\n`);
  }
}
