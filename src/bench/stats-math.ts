// Order statistics for benchmark figures. Pure functions, no I/O.
//
// Percentiles interpolate linearly between the closest ranks (Hyndman & Fan type 7, the
// default of R, NumPy and Excel's PERCENTILE.INC), the same rule tools/vtoe_pingpong.c uses.

function checked(values: readonly number[], what: string): number[] {
  if (values.length === 0) throw new RangeError(`${what} of an empty list`);
  for (const v of values) {
    if (!Number.isFinite(v)) throw new RangeError(`${what}: ${v} is not a finite number`);
  }
  return [...values].sort((a, b) => a - b);
}

/** The p-th percentile (0 <= p <= 100) of values already sorted ascending. */
export function percentileSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError('percentile of an empty list');
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile ${p} is outside [0, 100]`);
  const pos = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  if (lo >= sorted.length - 1) return sorted[sorted.length - 1]!;
  const lower = sorted[lo]!;
  const upper = sorted[lo + 1]!;
  return lower + (upper - lower) * (pos - lo);
}

/** The p-th percentile (0 <= p <= 100) of values in any order. */
export function percentile(values: readonly number[], p: number): number {
  return percentileSorted(checked(values, 'percentile'), p);
}

/** The median: the middle value, or the mean of the two middle values. */
export function median(values: readonly number[]): number {
  return percentileSorted(checked(values, 'median'), 50);
}

export function mean(values: readonly number[]): number {
  const v = checked(values, 'mean');
  return v.reduce((sum, x) => sum + x, 0) / v.length;
}

export function min(values: readonly number[]): number {
  return checked(values, 'min')[0]!;
}

export function max(values: readonly number[]): number {
  const v = checked(values, 'max');
  return v[v.length - 1]!;
}
