// One row per offload-capable socket for `vtoe ss`: listeners and both ends of every shadow
// connection, with the TCP, CM and QP states and the bytes each way.
import type { CoreCA } from './core-ca.js';
import type { SockAddr } from '../native.js';
import type { VerbsDataPath } from '../native-verbs.js';

export interface SocketRow {
  sid: number | null;
  cid: string | null;
  fabric: string;
  tcp: string;
  cm: string;
  qp: string;
  bytesSent: number;
  bytesReceived: number;
  /** As ss's Recv-Q: bytes in this end's ring that its process has not read. */
  recvQ: number;
  /** As ss's Send-Q: bytes its process wrote that the peer has not yet consumed. */
  sendQ: number;
  doorbells: number; // wake-ups this end received
  local: string;
  peer: string;
  pid: number;
  program: string;
  /** verbs ends only (`vtoe ss --json`): where the data path stands, as `ss -i` for TCP */
  dataPath?: VerbsDataPath;
}

export function formatAddress(a: SockAddr | null | undefined): string {
  if (!a) return '*';
  return a.family === 6 ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** One end's queues from its two rings: tx (it produces) and rx (it consumes). On the verbs
 * fabric what the peer has consumed (`acked`) says what is unacked, since the agent frees the
 * tx ring past bytes it holds in its send buffer. */
function queues(tx: { head: number; tail: number }, rx: { head: number; tail: number }, acked = tx.tail): { recvQ: number; sendQ: number } {
  return { recvQ: rx.head - rx.tail, sendQ: tx.head - Math.min(acked, tx.head) };
}

export function socketRows(core: CoreCA): SocketRow[] {
  const rows: SocketRow[] = [];
  for (const sock of core.sockets.values()) {
    if (sock.kind !== 'listener') continue;
    const proc = core.processes.get(sock.client);
    const l = sock.listener;
    rows.push({
      sid: sock.sid, cid: null, fabric: '-', tcp: 'LISTEN', cm: '-', qp: '-', bytesSent: 0, bytesReceived: 0, recvQ: 0, sendQ: 0, doorbells: 0,
      local: formatAddress({ family: l.family, address: l.address, port: l.port, scopeId: 0 }), peer: '*',
      pid: proc?.pid ?? 0, program: proc?.program ?? '?',
    });
  }
  for (const conn of core.connections.values()) {
    const rings = conn.link.counters().rings;
    for (const side of [0, 1] as const) {
      const end = conn.shadow.ends[side];
      const addrs = side === 0 ? [conn.local, conn.remote] : [conn.remote, conn.local];
      rows.push({
        sid: end.sid, cid: conn.shadow.cid.toString(), fabric: conn.shadow.fabric,
        tcp: end.tcp, cm: end.cm, qp: end.qp,
        bytesSent: rings[side].head, bytesReceived: rings[1 - side]!.tail, ...queues(rings[side], rings[1 - side]!),
        doorbells: rings[1 - side]!.wakes,
        local: formatAddress(addrs[0]), peer: formatAddress(addrs[1]),
        pid: conn.pids[side], program: conn.programs[side],
      });
    }
  }
  const verbs = core.verbs;
  for (const end of verbs?.ends.values() ?? []) {
    const c = verbs!.connCounters(end);
    rows.push({
      sid: end.sid, cid: end.cid.toString(), fabric: 'verbs', tcp: end.tcp, cm: end.cm, qp: end.qp,
      bytesSent: c?.rings[end.side].head ?? 0, bytesReceived: c?.rings[1 - end.side]!.tail ?? 0,
      ...(c ? queues(c.rings[end.side], c.rings[1 - end.side]!, c.dataPath.peerConsumed) : { recvQ: 0, sendQ: 0 }),
      doorbells: c?.rings[1 - end.side]!.wakes ?? 0,
      local: formatAddress(end.local), peer: formatAddress(end.remote),
      pid: end.pid, program: end.program,
      ...(c ? { dataPath: c.dataPath } : {}),
    });
  }
  return rows;
}
