/** Helpers over one row of logits: sampling at a temperature, and argmax for greedy decoding. */
import { Rng } from "../util/rng";

export function argmax(a: ArrayLike<number>, offset = 0, n = a.length - offset): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[offset + i] > a[offset + best]) best = i;
  return best;
}

/**
 * Draws a token from softmax(logits / temperature) for row `row` of a batch × vocab array, by
 * inverting the CDF with one uniform. Temperature 0 means greedy.
 */
export function sampleToken(logits: Float32Array, row: number, vocab: number, temperature: number, rng: Rng): number {
  const offset = row * vocab;
  if (temperature === 0) return argmax(logits, offset, vocab);
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) if (logits[offset + i] > max) max = logits[offset + i];
  let total = 0;
  const p = new Float64Array(vocab);
  for (let i = 0; i < vocab; i++) {
    p[i] = Math.exp((logits[offset + i] - max) / temperature);
    total += p[i];
  }
  let u = rng.uniform() * total;
  for (let i = 0; i < vocab; i++) {
    u -= p[i];
    if (u < 0) return i;
  }
  return argmax(logits, offset, vocab);
}
