// Plain-text renderings for the CLI: `vtoe ss` rows and `vtoe stats` without --json.
import { formatBytes } from './bench/format.js';
import { formatTable } from './text-table.js';
import type { SocketRow } from './agent/socket-rows.js';
import type { StatsSnapshot } from './agent/stats.js';

export function formatSocketRows(rows: SocketRow[]): string {
  const header = ['SID', 'CID', 'FABRIC', 'TCP', 'CM', 'QP', 'RECV-Q', 'SEND-Q', 'SENT', 'RECEIVED', 'WAKEUPS', 'LOCAL', 'PEER', 'PID', 'PROGRAM'];
  return formatTable([header, ...rows.map((r) => [
    r.sid === null ? '-' : String(r.sid), r.cid ?? '-', r.fabric, r.tcp, r.cm, r.qp, String(r.recvQ), String(r.sendQ),
    String(r.bytesSent), String(r.bytesReceived), String(r.doorbells), r.local, r.peer, String(r.pid), r.program,
  ])]);
}

export function formatStats(s: StatsSnapshot): string {
  const reasons = Object.entries(s.fallback.reasons).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
  return [
    `agent pid ${s.agent.pid} on ${s.agent.socket}, up ${s.agent.uptimeSeconds} s`,
    `processes: ${s.processes.connected} connected, ${s.processes.seen} seen, ${s.processes.protocolErrors} protocol errors`,
    `offloaded connections: ${s.offloaded} (open ${s.connections.open}, awaiting accept ${s.connections.pendingAccept}, timewait ${s.connections.timewait})`,
    `fabrics: shm ${s.fabrics.shm}; verbs ${s.fabrics.verbs}`,
    `listeners: ${s.listeners}; kernel clients accepted on them: ${s.kernelAccepted}`,
    `fallback: ${s.fallback.total} (${reasons})`,
    `timed out (silent remote peers): ${s.peerTimeouts ?? 0}; resumed on a new QP (link flaps): ${s.resumes ?? 0}`,
    `refused (unproven claims): ${Object.entries(s.refused ?? {}).map(([k, v]) => `${k}=${v}`).join(' ') || 'none'}`,
    ...pinnedLines(s),
    ...(s.verbsPolling ? [`verbs polling (VTOE_VERBS_SPIN_US): ${s.verbsPolling.polled} connections now; windows ${s.verbsPolling.windows}, `
      + `${s.verbsPolling.caught} of them caught traffic with no wake-up`] : []),
    ...silentHostLines(s),
    `bytes: sent ${s.bytes.sent}, received ${s.bytes.received}; wake-ups sent to sleeping readers: ${s.doorbells}; rings grown (lagging readers, bulk writes): ${s.ringGrowths}`,
    ...programLines(s),
  ].join('\n');
}

/** The verbs fabric's pinned memory: what its connection ends hold of the budget. */
function pinnedLines(s: StatsSnapshot): string[] {
  const p = s.pinned;
  if (!p) return [];
  const lines = [`pinned for verbs rings: ${formatBytes(p.bytes)} of ${formatBytes(p.limit)} by ${p.ends} connection ends `
    + `(peak ${formatBytes(p.peak)}); ends refused for the budget: ${p.refused}`];
  if (p.staged) {
    lines.push(`pinned for send buffers (readers that lag): ${formatBytes(p.staged.bytes)} (peak ${formatBytes(p.staged.peak)}); `
      + `short of the budget: ${p.staged.refused} times`);
  }
  return lines;
}

/** Remote hosts on kernel TCP for now because they did not answer the verbs fabric. */
function silentHostLines(s: StatsSnapshot): string[] {
  const held = s.silentHosts ?? [];
  if (!held.length) return [];
  const shown = held.slice(0, 8).map((h) => `${h.host} (${Math.ceil(h.forMs / 1000)} s)`).join(', ');
  return [`hosts that left a verbs REQ unanswered, on kernel TCP for now: ${shown}${held.length > 8 ? `, and ${held.length - 8} more` : ''}`];
}

/** One line per program: its offloaded connections and its fallbacks by reason. */
function programLines(s: StatsSnapshot): string[] {
  const names = Object.keys(s.programs ?? {}).sort();
  if (!names.length) return [];
  return ['by program:', ...names.map((name) => {
    const p = s.programs[name]!;
    const fb = Object.entries(p.fallback).map(([k, v]) => `${k}=${v}`).join(' ');
    return `  ${name}: offloaded ${p.offloaded}${fb ? `, fallback ${fb}` : ''}`;
  })];
}
