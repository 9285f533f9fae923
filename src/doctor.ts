// `vtoe doctor`: the host's RDMA devices, ports, states and GIDs, the memlock limit, and whether
// an agent answers; each problem found comes with what to do about it.
import { adminRequest } from './agent/admin.js';
import { adminSocketPath, resolveConfigWithSources } from './config.js';
import { readMemlock, type Limit, type MemlockLimit } from './host-memory.js';
import { probeVerbs, type VerbsProbe } from './native.js';

export { parseMemlock, type Limit, type MemlockLimit } from './host-memory.js';

export interface AgentCheck {
  /** the admin socket that was asked */
  socket: string;
  running: boolean;
  /** why it did not answer, e.g. 'ENOENT' or a message */
  error?: string;
  /** the agent's verbs fabric: 'up on rdma_cm port N', 'down: why' or 'off (...)' */
  verbs?: string;
}

export interface Problem {
  what: string;
  fix: string;
}

export interface DoctorReport extends VerbsProbe {
  /** RLIMIT_MEMLOCK of this process (as inherited from the shell); null if unreadable */
  memlock: MemlockLimit | null;
  agent: AgentCheck;
  problems: Problem[];
}

/** Below this (and not unlimited) the agent cannot register enough rings with the NIC. */
export const MIN_MEMLOCK = 64 * 1024 * 1024;

export const FIX = {
  noLibrary: 'apt-get install rdma-core ibverbs-providers',
  noDevice:
    'on RoCE/Soft-RoCE: ' +
    '`modprobe rdma_rxe && rdma link add rxe0 type rxe netdev IFACE`; without RDMA hardware, ' +
    'test/rdma-vm/run.sh runs vtoe in a Soft-RoCE guest; until then the agent offloads only connections ' +
    'on this host (shm fabric) and other hosts are reached over kernel TCP',
  verbsDown: 'the agent opens the verbs fabric at start: restart it once the device works (VTOE_FABRIC must not be shm)',
  portNotActive:
    'check the cable/subnet manager (InfiniBand: opensm) or the netdev link (RoCE: `ip link set IFACE up`)',
  memlock:
    'raise it: ulimit -l unlimited, or LimitMEMLOCK=infinity in the agent\'s systemd unit, or ' +
    '/etc/security/limits.conf (only the agent registers memory, not the application processes)',
  agent: 'start one with `vtoe agent`',
  noClusterKey:
    'give every host the same key: head -c 32 /dev/urandom > /etc/vtoe/cluster.key && chmod 600 /etc/vtoe/cluster.key, ' +
    'copy it, and start each agent with VTOE_CLUSTER_KEY_FILE=/etc/vtoe/cluster.key (or VTOE_FABRIC_TRUSTED=1 on a fabric nobody else can reach)',
} as const;

function openFix(dev: string, errno: string | undefined): string {
  switch (errno) {
    case 'EACCES':
    case 'EPERM':
      return `this user may not open /dev/infiniband/uverbs*: run as root, or give the agent's user access ` +
        `(a udev rule setting the group/mode of /dev/infiniband/uverbs*, e.g. rdma-core's 'rdma' group)`;
    case 'ENOENT':
    case 'ENODEV':
    case 'ENXIO':
      return `the device node for ${dev} is missing: load ib_uverbs (\`modprobe ib_uverbs\`) and check /dev/infiniband/`;
    case 'ENOSYS':
    case 'EOPNOTSUPP':
      return `no userspace provider for ${dev}: apt-get install ibverbs-providers`;
    case 'ENOMEM':
      return `raise the memlock limit (ulimit -l unlimited) and retry`;
    default:
      return `check dmesg for ${dev}'s driver and that ibverbs-providers matches the kernel driver`;
  }
}

function fmtBytes(n: number): string {
  return n >= 1024 * 1024 ? `${+(n / (1024 * 1024)).toFixed(1)} MiB` : n >= 1024 ? `${+(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

/** The problem rules; pure, so they can be checked against synthetic probes. */
export function findProblems(probe: VerbsProbe, memlock: MemlockLimit | null, agent: AgentCheck): Problem[] {
  const problems: Problem[] = [];
  if (!probe.library.loaded) {
    problems.push({ what: `libibverbs is not available (${probe.library.error ?? 'not found'})`, fix: FIX.noLibrary });
  } else if (probe.devices.length === 0) {
    problems.push({ what: 'no RDMA device: this kernel has no RDMA support or no driver is loaded', fix: FIX.noDevice });
  }
  for (const dev of probe.devices) {
    if (!dev.canOpen) {
      problems.push({ what: `cannot open ${dev.name}: ${dev.openError ?? 'unknown error'}`, fix: openFix(dev.name, dev.openError) });
      continue;
    }
    if (!dev.canAllocPd) {
      problems.push({
        what: `cannot allocate a protection domain on ${dev.name}: ${dev.allocPdError ?? 'unknown error'}`,
        fix: openFix(dev.name, dev.allocPdError),
      });
    }
    for (const port of dev.ports) {
      if (port.state !== 'ACTIVE') {
        problems.push({ what: `port ${port.port} of ${dev.name} is ${port.state}`, fix: FIX.portNotActive });
      }
    }
  }
  if (memlock) {
    if (memlock.soft !== 'unlimited' && memlock.soft < MIN_MEMLOCK) {
      problems.push({ what: `the memlock limit is ${fmtBytes(memlock.soft)} (below ${fmtBytes(MIN_MEMLOCK)})`, fix: FIX.memlock });
    }
  } else {
    problems.push({ what: 'cannot read the memlock limit from /proc/self/limits', fix: 'check that /proc is mounted' });
  }
  if (agent.running && agent.verbs && !agent.verbs.startsWith('up') && probe.devices.some((d) => d.canOpen)) {
    problems.push({ what: `the agent's verbs fabric is ${agent.verbs}`, fix: FIX.verbsDown });
  }
  if (agent.running && agent.verbs?.startsWith('up') && agent.verbs.includes('this host only')) {
    problems.push({ what: 'the verbs fabric has no cluster key: connections to other hosts use kernel TCP', fix: FIX.noClusterKey });
  }
  if (!agent.running) {
    problems.push({ what: `no agent answers at ${agent.socket}${agent.error ? ` (${agent.error})` : ''}`, fix: FIX.agent });
  }
  return problems;
}

async function checkAgent(socket: string, timeoutMs: number): Promise<AgentCheck> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const stats = await Promise.race([
      adminRequest(socket, 'stats') as Promise<{ fabrics?: { verbs?: string } }>,
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no reply in ${timeoutMs} ms`)), timeoutMs); }),
    ]);
    return { socket, running: true, ...(stats.fabrics?.verbs ? { verbs: stats.fabrics.verbs } : {}) };
  } catch (err) {
    const e = err as Error & { code?: string };
    return { socket, running: false, error: e.code ?? e.message };
  } finally {
    clearTimeout(timer);
  }
}

export interface DoctorOptions {
  /** the agent's control socket (default: from the environment, as every command) */
  agentSocket?: string;
  /** how long to wait for the agent's reply */
  agentTimeoutMs?: number;
}

/**
 * Probes the RDMA devices (synchronously, through the addon), reads the memlock limit and asks
 * the agent's admin socket for its config.  Async only because of the agent check.
 */
export async function runDoctor(opts: DoctorOptions = {}): Promise<DoctorReport> {
  const agentSocket = opts.agentSocket ?? resolveConfigWithSources(process.env, {}).config.agentSocket;
  const probe = probeVerbs();
  const memlock = readMemlock();
  const agent = await checkAgent(adminSocketPath(agentSocket), opts.agentTimeoutMs ?? 2000);
  return { ...probe, memlock, agent, problems: findProblems(probe, memlock, agent) };
}

function fmtLimit(l: Limit): string {
  return l === 'unlimited' ? 'unlimited' : fmtBytes(l);
}

/** The report as text for a terminal. */
export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  lines.push(`libibverbs: ${r.library.loaded ? 'loaded' : `not available (${r.library.error ?? 'not found'})`}`);
  if (r.library.loaded) {
    lines.push(`RDMA devices: ${r.devices.length === 0 ? 'none' : r.devices.length}`);
  }
  for (const d of r.devices) {
    const open = d.canOpen ? `opens, ${d.canAllocPd ? 'PD ok' : `PD fails (${d.allocPdError ?? '?'})`}` : `cannot open (${d.openError ?? '?'})`;
    lines.push(`  ${d.name}  guid ${d.guid}${d.transport ? `  transport ${d.transport}` : ''}  ${open}`);
    for (const p of d.ports) {
      lines.push(`    port ${p.port}: ${p.state}  link ${p.linkLayer}  mtu ${p.activeMtu || '-'}${p.error ? `  (query failed: ${p.error})` : ''}`);
      for (const g of p.gids) lines.push(`      gid[${g.index}] ${g.gid}`);
    }
  }
  lines.push(`memlock: ${r.memlock ? `soft ${fmtLimit(r.memlock.soft)}, hard ${fmtLimit(r.memlock.hard)}` : 'unknown'}`);
  lines.push(`agent: ${r.agent.running ? 'running' : `not running${r.agent.error ? ` (${r.agent.error})` : ''}`} at ${r.agent.socket}`
    + (r.agent.verbs ? `; verbs fabric ${r.agent.verbs}` : ''));
  if (r.problems.length === 0) {
    lines.push('', 'no problems found');
  } else {
    lines.push('', `${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}:`);
    for (const p of r.problems) {
      lines.push(`  - ${p.what}`, `    fix: ${p.fix}`);
    }
  }
  return lines.join('\n');
}
