// HPCC (Debian's `hpcc`): its input file, sized to the machine, and its summary. Pure: no I/O.

/** The process grid P x Q for `ranks`: the most square factorisation, P <= Q (HPL prefers it). */
export function processGrid(ranks: number): { p: number; q: number } {
  if (!Number.isInteger(ranks) || ranks < 1) throw new RangeError(`ranks must be a positive integer, not ${ranks}`);
  let p = Math.floor(Math.sqrt(ranks));
  while (ranks % p !== 0) p--;
  return { p, q: ranks / p };
}

export interface HpccSizing {
  ranks: number;
  /** Bytes of memory the job may use for HPL's matrix (e.g. a fraction of MemTotal). */
  memoryBytes: number;
  /** Upper bound on N, so that a run stays short on a small machine. */
  maxN: number;
  nb?: number;
}

/** HPL's N: the largest multiple of NB whose N x N doubles fit the memory, at most maxN. */
export function problemSize(s: HpccSizing): number {
  const nb = s.nb ?? 80;
  const byMemory = Math.floor(Math.sqrt(s.memoryBytes / 8));
  const n = Math.min(byMemory, s.maxN);
  return Math.max(nb, Math.floor(n / nb) * nb);
}

/** hpccinf.txt for one problem size on the machine's grid (the layout of Debian's example). */
export function hpccInput(s: HpccSizing): string {
  const nb = s.nb ?? 80;
  const n = problemSize(s);
  const { p, q } = processGrid(s.ranks);
  const rows: Array<[string | number, string]> = [
    ['HPL.out', 'output file name (if any)'],
    [8, 'device out (6=stdout,7=stderr,file)'],
    [1, '# of problems sizes (N)'],
    [n, 'Ns'],
    [1, '# of NBs'],
    [nb, 'NBs'],
    [0, 'PMAP process mapping (0=Row-,1=Column-major)'],
    [1, '# of process grids (P x Q)'],
    [p, 'Ps'],
    [q, 'Qs'],
    ['16.0', 'threshold'],
    [1, '# of panel fact'],
    [2, 'PFACTs (0=left, 1=Crout, 2=Right)'],
    [1, '# of recursive stopping criterium'],
    [4, 'NBMINs (>= 1)'],
    [1, '# of panels in recursion'],
    [2, 'NDIVs'],
    [1, '# of recursive panel fact.'],
    [1, 'RFACTs (0=left, 1=Crout, 2=Right)'],
    [1, '# of broadcast'],
    [1, 'BCASTs (0=1rg,1=1rM,2=2rg,3=2rM,4=Lng,5=LnM)'],
    [1, '# of lookahead depth'],
    [1, 'DEPTHs (>=0)'],
    [2, 'SWAP (0=bin-exch,1=long,2=mix)'],
    [64, 'swapping threshold'],
    [0, 'L1 in (0=transposed,1=no-transposed) form'],
    [0, 'U  in (0=transposed,1=no-transposed) form'],
    [1, 'Equilibration (0=no,1=yes)'],
    [8, 'memory alignment in double (> 0)'],
  ];
  return [
    'HPLinpack benchmark input file',
    'Innovative Computing Laboratory, University of Tennessee',
    ...rows.map(([v, doc]) => `${String(v).padEnd(13)}${doc}`),
    '##### This line (no. 32) is ignored (it serves as a separator). ######',
    '0                      \tNumber of additional problem sizes for PTRANS',
    '1200 10000 30000        \tvalues of N',
    '0                       \tnumber of additional blocking sizes for PTRANS',
    '40 9 8 13 13 20 16 32 64       \tvalues of NB',
    '',
  ].join('\n');
}

/** The application figures the report shows, from hpccoutf.txt's summary section. */
export const HPCC_FIGURES = {
  HPL_Tflops: { label: 'HPL', unit: 'Gflop/s', scale: 1000, higherIsBetter: true },
  PTRANS_GBs: { label: 'PTRANS', unit: 'GB/s', scale: 1, higherIsBetter: true },
  MPIRandomAccess_GUPs: { label: 'MPIRandomAccess', unit: 'GUP/s', scale: 1, higherIsBetter: true },
  MPIFFT_Gflops: { label: 'MPIFFT', unit: 'Gflop/s', scale: 1, higherIsBetter: true },
  MaxPingPongLatency_usec: { label: 'PingPong latency (max)', unit: 'us', scale: 1, higherIsBetter: false },
  MinPingPongBandwidth_GBytes: { label: 'PingPong bandwidth (min)', unit: 'GB/s', scale: 1, higherIsBetter: true },
  RandomlyOrderedRingLatency_usec: { label: 'Random ring latency', unit: 'us', scale: 1, higherIsBetter: false },
  RandomlyOrderedRingBandwidth_GBytes: { label: 'Random ring bandwidth', unit: 'GB/s', scale: 1, higherIsBetter: true },
} as const;

export type HpccFigure = keyof typeof HPCC_FIGURES;

export interface HpccSummary {
  /** HPCC's own verdicts: Success=1 and no failed residual checks. */
  valid: boolean;
  problems: string[];
  /** Each figure in the unit of HPCC_FIGURES (HPL in Gflop/s). */
  figures: Partial<Record<HpccFigure, number>>;
  raw: Record<string, string>;
}

/** Reads the `Begin of Summary section` ... `End of Summary section` of hpccoutf.txt. */
export function parseHpccOutput(text: string): HpccSummary {
  const begin = text.indexOf('Begin of Summary section.');
  const end = text.indexOf('End of Summary section.');
  const problems: string[] = [];
  const raw: Record<string, string> = {};
  if (begin < 0 || end < begin) {
    return { valid: false, problems: ['no summary section: HPCC did not finish'], figures: {}, raw };
  }
  for (const line of text.slice(begin, end).split('\n')) {
    const m = /^([A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) raw[m[1]!] = m[2]!;
  }
  if (raw.Success !== '1') problems.push(`Success=${raw.Success ?? '(missing)'}`);
  if (raw.Failure !== undefined && raw.Failure !== '0') problems.push(`Failure=${raw.Failure}`);
  for (const m of text.matchAll(/(\d+) tests completed and failed residual checks/g)) {
    if (m[1] !== '0') problems.push(`${m[1]} HPL tests failed their residual checks`);
  }
  const figures: Partial<Record<HpccFigure, number>> = {};
  for (const [key, f] of Object.entries(HPCC_FIGURES) as Array<[HpccFigure, (typeof HPCC_FIGURES)[HpccFigure]]>) {
    const v = Number(raw[key]);
    if (raw[key] !== undefined && Number.isFinite(v)) figures[key] = v * f.scale;
  }
  return { valid: problems.length === 0, problems, figures, raw };
}
