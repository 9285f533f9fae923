// The differential programs print one fact per line, "call.behaviour: value"; these helpers
// compare a kernel run (the oracle) with a run through the shim and make the coverage table.
import { formatTable } from '../../src/text-table.js';

export function parseFacts(out: string): Array<[string, string]> {
  return out.split('\n').filter((l) => l !== '').map((l) => {
    const i = l.indexOf(': ');
    return i < 0 ? [l, ''] : [l.slice(0, i), l.slice(i + 2)];
  });
}

export type Verdict = 'same' | 'known gap' | 'DIFFERENT';

export interface CoverageRow {
  call: string;
  behaviour: string;
  kernel: string;
  vtoe: string;
  verdict: Verdict;
}

/** One row per fact the kernel printed (a fact the shim run lacks shows as '(missing)'). */
export function coverageRows(kernelOut: string, offloadOut: string, isKnown: (label: string) => boolean): CoverageRow[] {
  const offl = new Map(parseFacts(offloadOut));
  return parseFacts(kernelOut).map(([label, k]) => {
    const dot = label.indexOf('.');
    const vtoe = offl.has(label) ? offl.get(label)! : '(missing)';
    const verdict: Verdict = vtoe === k ? 'same' : isKnown(label) ? 'known gap' : 'DIFFERENT';
    return { call: dot < 0 ? label : label.slice(0, dot), behaviour: dot < 0 ? '' : label.slice(dot + 1), kernel: k, vtoe, verdict };
  });
}

export function formatCoverage(rows: readonly CoverageRow[]): string {
  const counts = rows.reduce((m, r) => m.set(r.verdict, (m.get(r.verdict) ?? 0) + 1), new Map<Verdict, number>());
  const summary = [...counts].map(([v, n]) => `${n} ${v}`).join(', ');
  return `${formatTable([['call', 'behaviour', 'kernel TCP', 'through vtoe', 'result'],
    ...rows.map((r) => [r.call, r.behaviour, r.kernel, r.vtoe, r.verdict])])}\n${rows.length} facts: ${summary}`;
}
