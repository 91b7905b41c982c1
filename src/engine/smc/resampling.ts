/**
 * Resampling schemes: each maps normalised weights to K ancestor indices whose expected offspring
 * count for particle i is K·w_i (unbiased). Stratified, systematic and residual resampling have lower
 * variance than multinomial (Douc, Cappé & Moulines 2005).
 */
import { RESAMPLING_SCHEMES, Resampling } from "../../protocol/protocol";
import { Rng } from "../util/rng";

export { RESAMPLING_SCHEMES };
export type ResamplingScheme = Resampling;

/** Ancestor indices from sorted uniforms u_0 ≤ … ≤ u_{K−1} in [0, 1), by walking the CDF once. */
function invertSortedUniforms(w: ArrayLike<number>, u: ArrayLike<number>): number[] {
  const out: number[] = [];
  let i = 0;
  let cdf = w[0];
  for (let k = 0; k < u.length; k++) {
    while (u[k] >= cdf && i < w.length - 1) cdf += w[++i];
    out.push(i);
  }
  return out;
}

export function multinomial(w: ArrayLike<number>, k: number, rng: Rng): number[] {
  const u = Array.from({ length: k }, () => rng.uniform()).sort((a, b) => a - b);
  return invertSortedUniforms(w, u);
}

export function stratified(w: ArrayLike<number>, k: number, rng: Rng): number[] {
  return invertSortedUniforms(
    w,
    Array.from({ length: k }, (_, j) => (j + rng.uniform()) / k),
  );
}

export function systematic(w: ArrayLike<number>, k: number, rng: Rng): number[] {
  const u0 = rng.uniform();
  return invertSortedUniforms(
    w,
    Array.from({ length: k }, (_, j) => (j + u0) / k),
  );
}

/** floor(K·w_i) copies of each particle, then the remainder multinomially on the residual weights. */
export function residual(w: ArrayLike<number>, k: number, rng: Rng): number[] {
  const out: number[] = [];
  const rest = new Float64Array(w.length);
  let restSum = 0;
  for (let i = 0; i < w.length; i++) {
    const copies = Math.floor(k * w[i]);
    for (let c = 0; c < copies; c++) out.push(i);
    rest[i] = k * w[i] - copies;
    restSum += rest[i];
  }
  const left = k - out.length;
  if (left > 0) {
    for (let i = 0; i < rest.length; i++) rest[i] /= restSum;
    out.push(...multinomial(rest, left, rng));
  }
  return out;
}

export function resample(scheme: ResamplingScheme, w: ArrayLike<number>, k: number, rng: Rng): number[] {
  switch (scheme) {
    case "multinomial":
      return multinomial(w, k, rng);
    case "stratified":
      return stratified(w, k, rng);
    case "systematic":
      return systematic(w, k, rng);
    case "residual":
      return residual(w, k, rng);
  }
}
