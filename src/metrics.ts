// The agent's counters as OpenMetrics 1.0.0 text, for Prometheus and the like: `vtoe stats
// --format openmetrics` and the agent's VTOE_METRICS_PORT endpoint. One table row per family.
import { FallbackReason, reasonName } from './abi.js';
import { REFUSALS, type ProgramStats, type StatsSnapshot } from './agent/stats.js';

type Labels = Record<string, string>;
interface Sample { labels?: Labels; value: number }

interface Family {
  /** Without the vtoe_ prefix, and for a counter without _total (its samples add it). */
  name: string;
  type: 'counter' | 'gauge';
  /** OpenMetrics wants the unit as the name's last word too. */
  unit?: 'bytes' | 'seconds';
  help: string;
  /** null: the family does not apply to this agent (pinned memory without verbs). */
  samples: (s: StatsSnapshot) => number | Sample[] | null;
}

// Reasons that could be counted are shown at 0 before the first one, so a rate is defined from
// the start; names the agent counts outside these lists still appear once counted.
const FALLBACK_REASONS = Object.values(FallbackReason).filter((r) => r !== FallbackReason.NONE).map(reasonName);

function byLabel(label: string, counts: Record<string, number> | undefined, known: readonly string[] = []): Sample[] {
  const all: Record<string, number> = { ...Object.fromEntries(known.map((k) => [k, 0])), ...counts };
  return Object.keys(all).sort().map((k) => ({ labels: { [label]: k }, value: all[k]! }));
}

function programs(s: StatsSnapshot): [string, ProgramStats][] {
  return Object.keys(s.programs ?? {}).sort().map((name) => [name, s.programs[name]!]);
}

const FAMILIES: readonly Family[] = [
  { name: 'offloaded_connections', type: 'counter', help: 'Connections carried by a fabric since the agent started.',
    samples: (s) => s.offloaded },
  { name: 'connections', type: 'gauge', help: 'Offloaded connections the agent holds now, by state.',
    samples: (s) => [
      { labels: { state: 'open' }, value: s.connections.open },
      { labels: { state: 'pending_accept' }, value: s.connections.pendingAccept },
      { labels: { state: 'timewait' }, value: s.connections.timewait },
    ] },
  { name: 'fallbacks', type: 'counter', help: 'Connections left on kernel TCP, by reason.',
    samples: (s) => byLabel('reason', s.fallback.reasons, FALLBACK_REASONS) },
  { name: 'refusals', type: 'counter', help: 'Requests refused as unproven claims, by reason.',
    samples: (s) => byLabel('reason', s.refused, REFUSALS) },
  { name: 'rejected_connections', type: 'counter', help: 'Connections that did not complete: the kernel rendezvous failed (REJ).',
    samples: (s) => s.rejected ?? 0 },
  { name: 'payload_bytes', type: 'counter', unit: 'bytes', help: 'Bytes the programs sent and received on offloaded connections.',
    samples: (s) => [
      { labels: { direction: 'sent' }, value: s.bytes.sent },
      { labels: { direction: 'received' }, value: s.bytes.received },
    ] },
  { name: 'doorbell_wakeups', type: 'counter', help: 'Wake-ups sent to sleeping readers.',
    samples: (s) => s.doorbells },
  { name: 'ring_growths', type: 'counter', help: 'Rings that moved to their large area: a reader lagged, or one write held a small ring\'s worth.',
    samples: (s) => s.ringGrowths },
  { name: 'events', type: 'counter', help: 'Events (rdma_cm and replies) the agent raised or replied with, by name.',
    samples: (s) => byLabel('event', s.events) },
  { name: 'program_offloaded_connections', type: 'counter', help: 'Offloaded connections each program took part in (its first 15 bytes).',
    samples: (s) => programs(s).map(([program, p]) => ({ labels: { program }, value: p.offloaded })) },
  { name: 'program_fallbacks', type: 'counter', help: "Each program's connections left on kernel TCP, by reason.",
    samples: (s) => programs(s).flatMap(([program, p]) =>
      byLabel('reason', p.fallback).map(({ labels, value }) => ({ labels: { program, ...labels }, value }))) },
  { name: 'processes_connected', type: 'gauge', help: 'Processes connected to the agent now.',
    samples: (s) => s.processes.connected },
  { name: 'processes_seen', type: 'counter', help: 'Processes that connected to the agent since it started.',
    samples: (s) => s.processes.seen },
  { name: 'protocol_errors', type: 'counter', help: 'Malformed messages from processes (their channel was dropped).',
    samples: (s) => s.processes.protocolErrors },
  { name: 'peer_timeouts', type: 'counter', help: 'Verbs connections ended with ETIMEDOUT because the remote peer fell silent.',
    samples: (s) => s.peerTimeouts ?? 0 },
  { name: 'resumes', type: 'counter', help: 'Verbs connections moved to a new QP after theirs failed or stuck (a link flap).',
    samples: (s) => s.resumes ?? 0 },
  { name: 'kernel_accepted_connections', type: 'counter', help: 'Kernel TCP clients accepted on listeners that also take offloaded ones.',
    samples: (s) => s.kernelAccepted },
  { name: 'listeners', type: 'gauge', help: 'Listening sockets registered with the agent.',
    samples: (s) => s.listeners },
  { name: 'fabric_up', type: 'gauge', help: '1 while the fabric carries connections, else 0.',
    samples: (s) => (['shm', 'verbs'] as const).map((fabric) => ({ labels: { fabric }, value: s.fabrics[fabric].startsWith('up') ? 1 : 0 })) },
  { name: 'pinned_bytes', type: 'gauge', unit: 'bytes', help: 'Memory pinned for verbs connections.',
    samples: (s) => s.pinned?.bytes ?? null },
  { name: 'pinned_limit_bytes', type: 'gauge', unit: 'bytes', help: 'The pinned-memory budget of the verbs fabric (VTOE_PINNED_MAX).',
    samples: (s) => s.pinned?.limit ?? null },
  { name: 'pinned_peak_bytes', type: 'gauge', unit: 'bytes', help: 'The most memory pinned at once since the agent started.',
    samples: (s) => s.pinned?.peak ?? null },
  { name: 'pinned_send_buffer_bytes', type: 'gauge', unit: 'bytes', help: 'Memory pinned for the send buffers of verbs connections whose readers lag.',
    samples: (s) => s.pinned?.staged?.bytes ?? null },
  { name: 'pinned_connection_ends', type: 'gauge', help: 'Verbs connection ends holding pinned memory.',
    samples: (s) => s.pinned?.ends ?? null },
  { name: 'pinned_refused_ends', type: 'counter', help: 'Verbs connection ends refused because they did not fit the pinned-memory budget.',
    samples: (s) => s.pinned?.refused ?? null },
  { name: 'silent_hosts', type: 'gauge', help: 'Remote hosts held on kernel TCP because they left a verbs REQ unanswered.',
    samples: (s) => s.silentHosts?.length ?? 0 },
  { name: 'uptime_seconds', type: 'gauge', unit: 'seconds', help: 'Seconds since the agent started.',
    samples: (s) => s.agent.uptimeSeconds },
  { name: 'ring_bytes', type: 'gauge', unit: 'bytes', help: "Memory of the open connections' rings.",
    samples: (s) => s.memory.ringBytes },
  { name: 'agent_state_bytes', type: 'gauge', unit: 'bytes', help: "The agent's own memory for the connections it holds (estimate).",
    samples: (s) => s.memory.agentStateBytes },
];

/** Label values and HELP text: the three escapes OpenMetrics defines. */
function escape(text: string): string {
  return text.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

function sampleLine(name: string, { labels = {}, value }: Sample): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  return `${name}${pairs.length ? `{${pairs.join(',')}}` : ''} ${value}`;
}

export function formatOpenMetrics(s: StatsSnapshot): string {
  const lines: string[] = [];
  for (const f of FAMILIES) {
    const got = f.samples(s);
    if (got === null) continue;
    const name = `vtoe_${f.name}`;
    lines.push(`# TYPE ${name} ${f.type}`);
    if (f.unit) lines.push(`# UNIT ${name} ${f.unit}`);
    lines.push(`# HELP ${name} ${escape(f.help)}`);
    const sampleName = f.type === 'counter' ? `${name}_total` : name;
    for (const sample of typeof got === 'number' ? [{ value: got }] : got) lines.push(sampleLine(sampleName, sample));
  }
  return `${lines.join('\n')}\n# EOF\n`;
}
