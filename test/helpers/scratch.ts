// Per-test scratch for end-to-end tests: agents and temporary directories made during a test
// are stopped and removed after it, with whatever processes it left running.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { Agent } from '../../src/agent/agent.js';
import { killAll } from './proc.js';

export interface Scratch {
  /** A new directory under the system's temporary one, removed after the test. */
  tempDir(prefix: string): string;
  /** The agent, stopped after the test. */
  track(agent: Agent): Agent;
}

/** Registers the cleanup (call at the top of a test file). */
export function scratchPerTest(): Scratch {
  let agents: Agent[] = [];
  let dirs: string[] = [];
  afterEach(async () => {
    killAll();
    for (const a of agents) await a.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    agents = [];
    dirs = [];
  });
  return {
    tempDir(prefix) {
      const d = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(d);
      return d;
    },
    track(agent) {
      agents.push(agent);
      return agent;
    },
  };
}
