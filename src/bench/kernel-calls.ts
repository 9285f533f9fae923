// Kernel calls (system calls) per round trip of a zero-byte MPI ping-pong: the counters' outputs
// and the arithmetic. Pure: no I/O (the `syscalls` workload in workloads.ts runs the counters).
//
// Each rank runs under a counter twice, once for N1 and once for N2 round trips. MPI_Init, the
// connections' set-up and MPI_Finalize cost the same in both runs, so the difference is what the
// extra round trips cost: calls per round trip = (calls(N2) - calls(N1)) / (N2 - N1), per rank
// and per system call. A rank sends one message and receives one per round trip, so a rank's
// figure is also its calls per message sent and received.

/** A rank's system calls: the total and by name; the names sum to the total. */
export interface CallCounts {
  total: number;
  byName: Record<string, number>;
}

/** What the counters can count: perf stat's tracepoints (the process runs at full speed, so a
 * ring that spins still spins), or strace -f -c (every call stops the process: slower, and a
 * waiter whose spin runs out under it may make calls it would not make at full speed). */
export const SYSCALL_COUNTERS = ['perf', 'strace'] as const;
export type SyscallCounter = (typeof SYSCALL_COUNTERS)[number];

/** The system calls perf stat counts by name (the rest are 'other'): those a message-passing loop
 * makes to wait, move bytes, lock and read clocks, and the ones MPIs make for memory. */
export const PERF_SYSCALL_NAMES = [
  'poll', 'ppoll', 'select', 'pselect6', 'epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'epoll_ctl',
  'read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'recvfrom', 'sendto', 'recvmsg', 'sendmsg',
  'recvmmsg', 'sendmmsg', 'futex', 'sched_yield', 'nanosleep', 'clock_nanosleep', 'clock_gettime',
  'gettimeofday', 'getpid', 'gettid', 'ioctl', 'fcntl', 'process_vm_readv', 'process_vm_writev',
  'mmap', 'munmap', 'madvise', 'mprotect', 'rt_sigprocmask', 'getrusage',
] as const;

/** perf stat's events: every system call's entry, then the named ones. */
export function perfEvents(names: readonly string[]): string {
  return ['raw_syscalls:sys_enter', ...names.map((n) => `syscalls:sys_enter_${n}`)].join(',');
}

/**
 * Reads `strace -c` (or `strace -f -c`) output: one row per system call, `% time, seconds,
 * usecs/call, calls, [errors], syscall`, then a `total` row. Throws if there is no table.
 */
export function parseStraceSummary(text: string): CallCounts {
  const lines = text.split('\n');
  const head = lines.findIndex((l) => /^\s*% time\s+seconds\s+usecs\/call\s+calls\s+errors\s+syscall\s*$/.test(l));
  if (head < 0) throw new Error('not strace -c output: no "% time seconds usecs/call calls errors syscall" heading');
  const byName: Record<string, number> = {};
  let total: number | undefined;
  for (const line of lines.slice(head + 1)) {
    const cells = line.trim().split(/\s+/);
    if (!cells[0] || cells[0].startsWith('---')) continue;
    // errors is blank where a call never failed: 5 cells or 6
    if (cells.length !== 5 && cells.length !== 6) break;
    const name = cells[cells.length - 1]!;
    const calls = Number(cells[3]);
    if (!Number.isInteger(calls)) throw new Error(`strace -c: unreadable row "${line.trim()}"`);
    if (name === 'total') {
      total = calls;
      break;
    }
    byName[name] = (byName[name] ?? 0) + calls;
  }
  const sum = Object.values(byName).reduce((a, b) => a + b, 0);
  if (total !== undefined && total !== sum) throw new Error(`strace -c: the rows sum to ${sum} calls, its total says ${total}`);
  return { total: sum, byName };
}

/**
 * Reads `perf stat -x,` output of perfEvents(): `count,unit,event,...` lines. raw_syscalls:sys_enter
 * is the total; syscalls:sys_enter_NAME the named calls; 'other' is the rest. Throws if an event
 * was not counted (no tracepoint access: perf_event_paranoid, tracefs).
 */
export function parsePerfStat(text: string): CallCounts {
  let total: number | undefined;
  const byName: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const [count, , event] = line.split(',');
    if (!event) continue;
    const name = event === 'raw_syscalls:sys_enter' ? '' : /^syscalls:sys_enter_(\w+)$/.exec(event)?.[1];
    if (name === undefined) continue;
    const n = Number(count);
    if (!Number.isInteger(n)) throw new Error(`perf stat did not count ${event}: ${count}`);
    if (name === '') total = n;
    else if (n) byName[name] = n;
  }
  if (total === undefined) throw new Error('not perf stat -x, output of raw_syscalls:sys_enter');
  const named = Object.values(byName).reduce((a, b) => a + b, 0);
  if (total - named) byName.other = total - named;
  return { total, byName };
}

/** (large - small) / (n2 - n1): the calls one round trip costs, total and per name. */
export function perRoundTrip(small: CallCounts, large: CallCounts, n1: number, n2: number): CallCounts {
  if (!(n2 > n1)) throw new RangeError(`perRoundTrip: needs n2 > n1, got ${n1} and ${n2}`);
  const byName: Record<string, number> = {};
  for (const name of new Set([...Object.keys(small.byName), ...Object.keys(large.byName)])) {
    const d = ((large.byName[name] ?? 0) - (small.byName[name] ?? 0)) / (n2 - n1);
    if (d) byName[name] = d;
  }
  return { total: (large.total - small.total) / (n2 - n1), byName };
}

/** The k largest names first, those under `min` per round trip left out; then 'other' (perf's
 * calls outside PERF_SYSCALL_NAMES) if it is at least `min`. */
export function topCalls(c: CallCounts, k = 4, min = 0.01): Array<[string, number]> {
  const named = Object.entries(c.byName)
    .filter(([n, v]) => n !== 'other' && v >= min)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, k);
  const other = c.byName.other;
  return other !== undefined && other >= min ? [...named, ['other', other]] : named;
}

/** "poll 5.10, sendto 1.00, recvfrom 1.00", or "none" below `min`. */
export function formatCalls(c: CallCounts, k = 4, min = 0.01): string {
  const top = topCalls(c, k, min);
  return top.length ? top.map(([n, v]) => `${n} ${v.toFixed(2)}`).join(', ') : 'none';
}

// ---- as bench figures ---------------------------------------------------------------------
//   kcalls_rt                    both ranks together, per round trip (the headline)
//   kcalls_rt_rank0              rank 0's calls per round trip
//   kcalls_rt_rank0:poll         rank 0's poll calls per round trip (names of at least 0.01)
//   kcalls_oneway_us             the ping-pong's one-way latency while counted (the counter's cost)

export const KCALLS = 'kcalls_rt';

export function kernelCallFigures(ranks: readonly CallCounts[], oneWayUs?: number): Record<string, number> {
  const f: Record<string, number> = { [KCALLS]: ranks.reduce((n, r) => n + r.total, 0) };
  ranks.forEach((r, i) => {
    f[`${KCALLS}_rank${i}`] = r.total;
    for (const [name, v] of topCalls(r, Infinity)) f[`${KCALLS}_rank${i}:${name}`] = v;
  });
  if (oneWayUs !== undefined) f.kcalls_oneway_us = oneWayUs;
  return f;
}

/** Back from the figures: each rank's calls per round trip (for the summary). */
export function kernelCallsOfFigures(figures: Record<string, number>): CallCounts[] {
  const ranks: CallCounts[] = [];
  for (const [key, v] of Object.entries(figures)) {
    const m = new RegExp(`^${KCALLS}_rank(\\d+)(?::(\\w+))?$`).exec(key);
    if (!m) continue;
    const r = (ranks[Number(m[1])] ??= { total: 0, byName: {} });
    if (m[2]) r.byName[m[2]] = v;
    else r.total = v;
  }
  return ranks.filter(Boolean);
}

/** Two decimals, and no "-0.00" for the set-up noise of a path that makes no calls. */
const two = (v: number) => (Math.abs(v) < 0.005 ? 0 : v).toFixed(2);

/** The summary's table: per mode, the calls per round trip of both ranks and each rank's top calls. */
export function kernelCallsTable(modes: ReadonlyArray<{ mode: string; figures: Record<string, number> }>): string[] {
  const rows = modes.filter((m) => m.figures[KCALLS] !== undefined);
  if (!rows.length) return [];
  const n = Math.max(...rows.map((m) => kernelCallsOfFigures(m.figures).length));
  const ranks = Array.from({ length: n }, (_, i) => i);
  const out = [
    `| mode | calls per round trip, both ranks | ${ranks.map((i) => `rank ${i}: calls per round trip (top calls)`).join(' | ')} | one-way µs while counted |`,
    `|${' --- |'.repeat(3 + n)}`,
  ];
  for (const m of rows) {
    const rs = kernelCallsOfFigures(m.figures);
    const cell = (i: number) => (rs[i] ? `${two(rs[i]!.total)} (${formatCalls(rs[i]!)})` : '–');
    const us = m.figures.kcalls_oneway_us;
    out.push(`| ${m.mode} | ${two(m.figures[KCALLS]!)} | ${ranks.map(cell).join(' | ')} | ${us === undefined ? '–' : us.toFixed(2)} |`);
  }
  return out;
}
