// How each bench mode runs an MPI job, per MPI implementation. Pure: builds argument lists.
//
//   offload  the MPI's TCP transport, preloaded with vtoe (the ranks' TCP goes through vtoe)
//   ipoib    the same TCP transport, no preload: kernel TCP (over lo here, ib0 on a cluster)
//   native   the MPI's own fast transport: shared memory on one host, its own choice (UCX over
//            the fabric) across hosts
//
// On one host the ranks inherit mpirun's environment. Across hosts (`hosts`), the launcher (ssh,
// or what `launcher` names) carries no environment, so what the ranks need goes on mpirun's
// command line (`rankEnv`), and mpirun and its daemons themselves stay on kernel TCP.

export const BENCH_MODES = ['offload', 'ipoib', 'native'] as const;
export type BenchMode = (typeof BENCH_MODES)[number];

export const MPI_FLAVOURS = ['openmpi', 'mpich'] as const;
export type MpiFlavour = (typeof MPI_FLAVOURS)[number];

export interface MpiLaunch {
  /** mpirun and its arguments up to the program. */
  argv: string[];
  /** Variables mpirun needs in its own environment (one host: the ranks inherit them). */
  env: Record<string, string>;
  /** What the mode really ran over, for labels. */
  transport: string;
}

export interface MpiJob {
  flavour: MpiFlavour;
  mode: BenchMode;
  ranks: number;
  /** The interface the TCP modes use: lo on one host, ib0 (IPoIB) on a cluster. */
  tcpInterface: string;
  /** Hosts to place the ranks on, one after another (the first is the launching host, where
   * rank 0 runs); none: every rank on this host. */
  hosts?: readonly string[];
  /** Across hosts: the rsh-compatible program that starts the MPI's daemons (default ssh). */
  launcher?: string;
  /** Across hosts: variables every rank needs (the preload and the agent's socket). */
  rankEnv?: Readonly<Record<string, string>>;
}

function openMpiLaunch(job: MpiJob, tcp: boolean): MpiLaunch {
  const { ranks, tcpInterface, hosts } = job;
  const btl = tcp ? ['--mca', 'pml', 'ob1', '--mca', 'btl', 'self,tcp', '--mca', 'btl_tcp_if_include', tcpInterface]
    : hosts ? [] : ['--mca', 'pml', 'ob1', '--mca', 'btl', 'self,vader'];
  // as root (CI, containers) Open MPI refuses to start without --allow-run-as-root
  const argv = ['mpirun.openmpi', '--allow-run-as-root', '--oversubscribe', '-np', String(ranks)];
  if (hosts) {
    argv.push('--host', hosts.map((h) => `${h}:${Math.ceil(ranks / hosts.length)}`).join(','), '--map-by', 'node',
      '--mca', 'plm_rsh_agent', job.launcher ?? 'ssh');
    for (const [k, v] of Object.entries(job.rankEnv ?? {})) argv.push('-x', `${k}=${v}`);
  }
  argv.push(...btl);
  const where = hosts ? `across ${hosts.length} hosts` : '';
  return {
    argv,
    env: {},
    transport: tcp ? `Open MPI TCP BTL over ${tcpInterface}${where ? ` ${where}` : ''}`
      : hosts ? `Open MPI's own choice of transport ${where}` : "Open MPI's vader shared-memory BTL",
  };
}

function mpichLaunch(job: MpiJob, tcp: boolean): MpiLaunch {
  const { ranks, tcpInterface, hosts } = job;
  // UCX's tcp transport, and its netmod even between ranks of one host (MPIR_CVAR_NOLOCAL)
  const env: Record<string, string> = tcp ? { UCX_TLS: 'tcp,self', UCX_NET_DEVICES: tcpInterface, MPIR_CVAR_NOLOCAL: '1' } : {};
  const argv = ['mpirun.mpich', '-np', String(ranks)];
  if (!hosts) return { argv, env, transport: tcp ? `MPICH ch4:ucx, UCX tcp over ${tcpInterface}` : 'MPICH ch4:ucx, shared memory' };
  argv.push('-hosts', hosts.join(','), '-ppn', String(Math.ceil(ranks / hosts.length)),
    '-launcher', 'ssh', '-launcher-exec', job.launcher ?? 'ssh');
  // Hydra hands its own environment to the ranks; -genv adds what only they must have.
  for (const [k, v] of Object.entries(job.rankEnv ?? {})) argv.push('-genv', k, v);
  const where = `across ${hosts.length} hosts`;
  return { argv, env, transport: tcp ? `MPICH ch4:ucx, UCX tcp over ${tcpInterface} ${where}` : `MPICH ch4:ucx, UCX's own choice ${where}` };
}

export function mpiLaunch(job: MpiJob): MpiLaunch {
  const tcp = job.mode !== 'native';
  return job.flavour === 'openmpi' ? openMpiLaunch(job, tcp) : mpichLaunch(job, tcp);
}

/** What a mode's line in a chart or table says it ran over. */
export function modeLabel(mode: BenchMode, transport: string, fabric: string): string {
  switch (mode) {
    case 'offload':
      return `offload: ${transport} through vtoe (${fabric})`;
    case 'ipoib':
      return `ipoib: ${transport}, kernel TCP`;
    case 'native':
      return `native: ${transport}`;
  }
}
