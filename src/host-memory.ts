// What this host lets a process pin: physical memory, RLIMIT_MEMLOCK (read from /proc, as
// Node has no getrlimit) and CAP_IPC_LOCK.  `vtoe doctor` reports them; the agent sizes its
// pinned-memory budget from them (src/agent/pinned-budget.ts).
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';

/** Bytes, or 'unlimited'. */
export type Limit = number | 'unlimited';

export interface MemlockLimit {
  soft: Limit;
  hard: Limit;
}

/** What the host allows: physical memory, and RLIMIT_MEMLOCK unless the process may lock it all. */
export interface HostMemory {
  memTotal: number;
  /** the soft RLIMIT_MEMLOCK in bytes, 'unlimited', or null when unreadable */
  memlockSoft: Limit | null;
  /** CAP_IPC_LOCK: registration is not charged against RLIMIT_MEMLOCK */
  ipcLock: boolean;
}

const CAP_IPC_LOCK = 14;

/** The "Max locked memory" line of /proc/<pid>/limits. */
export function parseMemlock(limits: string): MemlockLimit | null {
  const m = /^Max locked memory\s+(\S+)\s+(\S+)/m.exec(limits);
  if (!m) return null;
  const value = (s: string): Limit => (s === 'unlimited' ? 'unlimited' : Number(s));
  const soft = value(m[1]!);
  const hard = value(m[2]!);
  if (Number.isNaN(soft) || Number.isNaN(hard)) return null;
  return { soft, hard };
}

/** Whether the CapEff line of /proc/<pid>/status holds CAP_IPC_LOCK. */
export function hasIpcLock(status: string): boolean {
  const m = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(status);
  return m ? ((BigInt(`0x${m[1]}`) >> BigInt(CAP_IPC_LOCK)) & 1n) === 1n : false;
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

export function readMemlock(): MemlockLimit | null {
  return parseMemlock(readOr('/proc/self/limits', ''));
}

export function readHostMemory(): HostMemory {
  return {
    memTotal: totalmem(),
    memlockSoft: readMemlock()?.soft ?? null,
    ipcLock: hasIpcLock(readOr('/proc/self/status', '')),
  };
}
