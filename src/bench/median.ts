/** The middle value (the upper one of an even count); NaN for none. Benchmarks report it per step. */
export function median(values: readonly number[]): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}
