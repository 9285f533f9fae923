// How much agent heap one offloaded connection costs, measured once by building a batch of the
// same records the core CA keeps per connection.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { EventLog } from './event-log.js';
import { ShadowConnection } from './shadow-connection.js';

const SAMPLE = 2000;
let measured: number | null = null;

/** A full collection, so the heap delta counts only what is still referenced. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

export function measureAgentStateBytes(): number {
  if (measured !== null) return measured;
  const log = new EventLog(1);
  const keep: unknown[] = [];
  collectGarbage();
  const before = getHeapStatistics().used_heap_size;
  for (let i = 0; i < SAMPLE; i++) {
    const shadow = new ShadowConnection(BigInt(i + 1), 'shm', i + 1, log);
    const addr = { family: 4 as const, address: '127.0.0.1', port: 40000 + (i % 20000), scopeId: 0 };
    const conn = {
      shadow, link: null, local: addr, remote: { ...addr, port: 5000 },
      programs: ['client', 'server'], pids: [1000 + i, 2000 + i], listenerSid: 1, pendingKey: `5000:${i}`,
    };
    keep.push(conn, { sid: i + 1, client: 1, kind: 'connection', conn, side: 0 }, { sid: i + 2, client: 2, kind: 'connection', conn, side: 1 });
  }
  collectGarbage();
  const after = getHeapStatistics().used_heap_size;
  measured = Math.max(1, Math.round((after - before) / SAMPLE));
  keep.length = 0;
  return measured;
}
