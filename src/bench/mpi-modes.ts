// How each bench mode runs an MPI job, per MPI implementation. Pure: builds argument lists.
//
//   offload  the MPI's TCP transport, preloaded with vtoe (the ranks' TCP goes through vtoe)
//   ipoib    the same TCP transport, no preload: kernel TCP (over lo here, ib0 on a cluster)
//   native   the MPI's own fast transport: shared memory on one host, UCX/verbs on a cluster

export const BENCH_MODES = ['offload', 'ipoib', 'native'] as const;
export type BenchMode = (typeof BENCH_MODES)[number];

export const MPI_FLAVOURS = ['openmpi', 'mpich'] as const;
export type MpiFlavour = (typeof MPI_FLAVOURS)[number];

export interface MpiLaunch {
  /** mpirun and its arguments up to the program. */
  argv: string[];
  /** Variables the ranks need (they reach them through mpirun's environment). */
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
}

export function mpiLaunch(job: MpiJob): MpiLaunch {
  const { flavour, mode, ranks, tcpInterface } = job;
  const tcp = mode !== 'native';
  if (flavour === 'openmpi') {
    const btl = tcp ? ['--mca', 'btl', 'self,tcp', '--mca', 'btl_tcp_if_include', tcpInterface] : ['--mca', 'btl', 'self,vader'];
    return {
      // as root (CI, containers) Open MPI refuses to start without --allow-run-as-root
      argv: ['mpirun.openmpi', '--allow-run-as-root', '--oversubscribe', '-np', String(ranks), '--mca', 'pml', 'ob1', ...btl],
      env: {},
      transport: tcp ? `Open MPI TCP BTL over ${tcpInterface}` : "Open MPI's vader shared-memory BTL",
    };
  }
  return {
    argv: ['mpirun.mpich', '-np', String(ranks)],
    // UCX's tcp transport, and its netmod even between ranks of one host (MPIR_CVAR_NOLOCAL)
    env: tcp ? { UCX_TLS: 'tcp,self', UCX_NET_DEVICES: tcpInterface, MPIR_CVAR_NOLOCAL: '1' } : {},
    transport: tcp ? `MPICH ch4:ucx, UCX tcp over ${tcpInterface}` : 'MPICH ch4:ucx, shared memory',
  };
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
