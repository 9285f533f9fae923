// The differential conformance suite: each group of test/c/shim-conformance.c runs on kernel TCP
// and through the shim (IPv4 and IPv6), every printed fact is compared, and the coverage table
// (call × behaviour × result) is printed. A difference fails the test unless it is one of the
// listed gaps, and a listed gap that starts to match fails too, so the list can only shrink.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { kernelEnv, offloadEnv } from '../src/agent/preload-env.js';
import { buildC, repoRoot } from './helpers/cc.js';
import { coverageRows, formatCoverage, parseFacts, type CoverageRow } from './helpers/facts.js';
import { killAll, startProc } from './helpers/proc.js';

/** Groups that still differ from the kernel, and why (none today). */
const KNOWN_GAPS: Record<string, string> = {};
/** Single facts that still differ, and why (none today). */
const KNOWN_FACT_GAPS: Record<string, string> = {};
/**
 * Groups whose connections never get offloaded, and why: every other group must offload at
 * least one, or a run where everything fell back to kernel TCP would pass unnoticed.
 */
const NOT_OFFLOADED: Record<string, string> = {};
/** A group that hangs is killed after this long (a known gap sooner). */
const GROUP_TIMEOUT_MS = 20_000;
const KNOWN_GAP_TIMEOUT_MS = 4_000;

let dir: string;
let agent: Agent;
let bin: string;
let groups: string[] = [];
const table: CoverageRow[] = [];

beforeAll(async () => {
  bin = buildC('shim-conformance', ['test/c/shim-conformance.c', 'test/c/facts.h']);
  await promisify(execFile)('make', ['-s', '-C', join(repoRoot, 'preload')]);
  groups = (await promisify(execFile)(bin, ['list'])).stdout.trim().split('\n');
  dir = mkdtempSync(join(tmpdir(), 'vtoe-conformance-'));
  agent = await Agent.start({ socketPath: join(dir, 'agent.sock'), config: { timewaitMs: 20 } });
});

afterEach(() => killAll());

afterAll(async () => {
  if (table.length) console.log(`conformance coverage (kernel TCP is the oracle):\n${formatCoverage(table)}`);
  await agent?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface GroupRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

// Asynchronous: the agent in this process must keep serving the child.
async function runGroup(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<GroupRun> {
  const p = startProc(bin, args, env);
  const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
  const { code, signal } = await p.exited;
  clearTimeout(timer);
  return { code, signal, stdout: p.stdout(), stderr: p.stderr() };
}

describe('differential conformance: shim-conformance groups, kernel TCP against vtoe', () => {
  it('lists its groups', () => {
    expect(groups.length).toBeGreaterThanOrEqual(13);
  });

  // Groups are known only after the build, so one test walks them all and reports every group.
  // Without doorbells of their own (VTOE_PEER_BELLS=0, as a process short of descriptors
  // runs), every wake-up goes through the agent: the facts must not change.
  const modes = [
    { v6: false, bells: true }, { v6: true, bells: true }, { v6: false, bells: false }, { v6: true, bells: false },
  ];
  for (const { v6, bells } of modes) {
    const mode = `${v6 ? 'IPv6' : 'IPv4'}${bells ? '' : ', VTOE_PEER_BELLS=0'}`;
    it(`every group prints the kernel's facts (${mode})`, async () => {
      const problems: string[] = [];
      for (const group of groups) {
        const args = v6 ? ['v6', group] : [group];
        const gap = KNOWN_GAPS[group];
        const kernel = await runGroup(args, kernelEnv(), GROUP_TIMEOUT_MS);
        const env = { ...offloadEnv(agent.socketPath), ...(bells ? {} : { VTOE_PEER_BELLS: '0' }) };
        const offloadedBefore = agent.stats().offloaded;
        const offl = await runGroup(args, env, gap ? KNOWN_GAP_TIMEOUT_MS : GROUP_TIMEOUT_MS);
        await agent.until((a) => a.stats().processes.connected === 0);
        const offloaded = agent.stats().offloaded - offloadedBefore;
        if (offloaded === 0 && !(group in NOT_OFFLOADED)) problems.push(`${group}: no connection was offloaded`);
        if (offloaded > 0 && group in NOT_OFFLOADED) problems.push(`${group} now offloads: remove it from NOT_OFFLOADED`);
        if (process.env.VTOE_TEST_VERBOSE) console.log(`${group}${v6 ? ' v6' : ''}: ${offloaded} offloaded`);
        if (kernel.code !== 0 || kernel.stderr !== '') {
          problems.push(`${group}: the kernel run failed (${kernel.code ?? kernel.signal}): ${kernel.stderr}`);
          continue;
        }
        const rows = coverageRows(kernel.stdout, offl.stdout, (label) => gap !== undefined || label in KNOWN_FACT_GAPS)
          .map((r) => ({ ...r, call: `${r.call}${v6 ? ' (v6)' : ''}${bells ? '' : ' (no bell)'}` }));
        table.push(...rows);
        const extra = parseFacts(offl.stdout).filter(([l]) => !parseFacts(kernel.stdout).some(([k]) => k === l));
        for (const r of rows) if (r.verdict === 'DIFFERENT') problems.push(`${r.call}.${r.behaviour}: kernel '${r.kernel}', vtoe '${r.vtoe}'`);
        for (const [l] of extra) problems.push(`${group}: extra fact through vtoe: ${l}`);
        if (!gap && (offl.code !== 0 || offl.signal)) problems.push(`${group}: exited ${offl.code ?? offl.signal} through vtoe: ${offl.stderr}`);
        if (gap && rows.every((r) => r.verdict === 'same') && offl.code === 0) {
          problems.push(`${group} now matches the kernel: remove it from KNOWN_GAPS`);
        }
        for (const r of rows) {
          const label = `${r.call.replace(' (v6)', '').replace(' (no bell)', '')}.${r.behaviour}`;
          if (label in KNOWN_FACT_GAPS && r.verdict === 'same') problems.push(`${label} now matches: remove it from KNOWN_FACT_GAPS`);
        }
      }
      expect(problems).toEqual([]);
    }, 300_000);
  }

  // A daemon's closefrom (sshd after taking over its socket) must not close the shim's own
  // descriptors: with them gone, its connections lost their agent and their peers' bells, and
  // new ones went to kernel TCP or wrote doorbells into other sockets.
  it('close_range and closefrom leave the shim its descriptors: every connection is offloaded, none is reset', async () => {
    const kernel = await runGroup(['close-range'], kernelEnv(), GROUP_TIMEOUT_MS);
    const pairs = Number(/^range\.pairs-made: (\d+)$/m.exec(kernel.stdout)?.[1]);
    expect(pairs).toBeGreaterThanOrEqual(5);
    const before = agent.stats().offloaded;
    const offl = await runGroup(['close-range'], offloadEnv(agent.socketPath), GROUP_TIMEOUT_MS);
    await agent.until((a) => a.stats().processes.connected === 0);
    expect({ code: offl.code, stderr: offl.stderr, offloaded: agent.stats().offloaded - before })
      .toEqual({ code: 0, stderr: '', offloaded: pairs });
  }, 60_000);
});
