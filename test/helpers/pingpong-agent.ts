// An agent for end-to-end tests that drive tools/vtoe-pingpong (built here if missing), with
// TIMEWAIT short enough for hundreds of connections in a row; stopped after the test.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import type { ResolvedConfig } from '../../src/config.js';
import { packageRoot, toolPath } from '../../src/paths.js';
import type { Scratch } from './scratch.js';

export async function startPingPongAgent(scratch: Scratch, config: Partial<ResolvedConfig>): Promise<Agent> {
  if (!existsSync(toolPath('vtoe-pingpong'))) execFileSync('make', ['-C', 'tools'], { cwd: packageRoot, stdio: 'inherit' });
  const dir = scratch.tempDir('vtoe-pp-agent-');
  return scratch.track(await Agent.start({ socketPath: join(dir, 'agent.sock'), config: { timewaitMs: 20, ...config } }));
}
