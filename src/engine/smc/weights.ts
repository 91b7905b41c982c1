/** Log-space weight arithmetic for a particle population. */

/** log((1/n) Σ exp(x_i)); −∞ when every entry is −∞. */
export function logMeanExp(x: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i] - max);
  return max + Math.log(sum / x.length);
}

/** Normalised weights (summing to 1) from log weights; all zeros when every log weight is −∞. */
export function normalize(logW: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logW.length; i++) if (logW[i] > max) max = logW[i];
  const w = new Float64Array(logW.length);
  if (max === -Infinity) return w;
  let sum = 0;
  for (let i = 0; i < logW.length; i++) sum += w[i] = Math.exp(logW[i] - max);
  for (let i = 0; i < w.length; i++) w[i] /= sum;
  return w;
}

/** Effective sample size 1 / Σ w_i² of the normalised weights (0 when every weight is zero). */
export function effectiveSampleSize(logW: ArrayLike<number>): number {
  const w = normalize(logW);
  let s = 0;
  for (let i = 0; i < w.length; i++) s += w[i] * w[i];
  return s === 0 ? 0 : 1 / s;
}
