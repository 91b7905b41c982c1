/**
 * What one forward pass feeds the decoder graph about its tokens and its KV cache, and the cache
 * bookkeeping it leaves. Two layouts:
 * - growing: the cache gains `seq` positions every pass; `attention_mask` says which hold real tokens
 *   (a held row's new position is masked);
 * - fixed capacity (fuseAttention.ts): each row's filled slots are its first `positions`, the new
 *   tokens go right after them (a held row's slot is written over on its next token), the graph is
 *   told each row's length (SEQLENS_K, TOTAL_SEQUENCE_LENGTH), and the capacity grows by whole
 *   `capacityStep`s when a row would pass it.
 */
import * as ort from "onnxruntime-node";
import { KvCache } from "./kvCache";
import { SEQLENS_K, TOTAL_SEQUENCE_LENGTH } from "../onnx/fuseAttention";
import { packStep, STEP_INPUT } from "../onnx/packStepInputs";
import { SAMPLE_INVERSE_TEMPERATURE, SAMPLE_UNIFORM } from "../onnx/samplingHead";

export interface PassInputs {
  /** input_ids, position_ids (when the graph has them), the mask or the rows' lengths, and the draws' inputs; or all but one length packed (STEP_INPUT). */
  feeds: Record<string, ort.Tensor>;
  /** The cache length the pass reads: more than the cache's own means growing it first. */
  capacity: number;
  /** The cache length after the pass. */
  length: number;
  /** The new cache's mask, batch × length (empty with a fixed capacity: positions say it all). */
  mask: Uint8Array;
  /** Per row (padding rows too), the position id of its next real token (with a fixed capacity, its filled slots too). */
  positions: Int32Array;
}

/**
 * The inputs of a pass over `rows` (equal lengths; null holds a row) from `cache`. With a fixed
 * capacity, rows past the cache's batch pad the pass (the decoder keeps batches to a few sizes): they
 * must be held, and sit at position 0.
 */
export function passInputs(
  cache: KvCache,
  rows: readonly (readonly (number | null)[])[],
  o: {
    padId: number;
    capacityStep: number;
    positionIds: boolean;
    /** The sampling head's inputs, one uniform per row, for a graph that draws. */
    draw?: { uniforms: Float32Array; inverseTemperature: number };
    /** The inputs the graph takes packed in STEP_INPUT, in packing order (packStepInputs.ts); empty: one by one. The mask stays apart. */
    packed?: readonly string[];
  },
): PassInputs {
  const batch = rows.length;
  const seq = rows[0].length;
  const fixed = o.capacityStep > 0;
  if (batch !== cache.batch && !(fixed && batch > cache.batch && rows.slice(cache.batch).every((r) => r.every((t) => t === null)))) {
    throw new RangeError(
      `a pass of ${batch} rows over a cache of ${cache.batch}: only a fixed-capacity cache's pass is padded, with held rows`,
    );
  }
  // As numbers: the packed input takes them as floats; int64 (BigInt) only for a graph fed them apart.
  const ids = new Int32Array(batch * seq);
  const pos = new Int32Array(batch * seq);
  const start = Int32Array.from({ length: batch }, (_, b) => (b < cache.batch ? cache.positions[b] : 0));
  const positions = Int32Array.from(start);
  let capacity = cache.length;
  let length = cache.length + seq;
  const mask = new Uint8Array(fixed ? 0 : batch * length);
  for (let b = 0; b < batch; b++) {
    if (!fixed) mask.set(cache.mask.subarray(b * cache.length, (b + 1) * cache.length), b * length);
    for (let s = 0; s < seq; s++) {
      const tok = rows[b][s];
      ids[b * seq + s] = tok ?? o.padId;
      pos[b * seq + s] = positions[b];
      if (tok === null) continue;
      if (!fixed) mask[b * length + cache.length + s] = 1;
      positions[b]++;
    }
  }
  const feeds: Record<string, ort.Tensor> = {};
  const seqlens = Int32Array.from(start, (p) => p + seq - 1);
  if (fixed) {
    const need = start.reduce((a, p) => Math.max(a, p + seq), 0);
    // A prompt into an empty cache makes one just its length; later passes grow it by whole steps.
    if (cache.length > 0 && need > cache.length) capacity = Math.ceil(need / o.capacityStep) * o.capacityStep;
    length = Math.max(capacity, need);
    feeds[TOTAL_SEQUENCE_LENGTH] = new ort.Tensor("int32", Int32Array.of(need), []);
  } else {
    feeds.attention_mask = new ort.Tensor("int64", int64Mask(mask), [batch, length]);
  }
  if (o.packed?.length) {
    const values: Record<string, ArrayLike<number>> = {
      [SEQLENS_K]: seqlens,
      [SAMPLE_UNIFORM]: o.draw?.uniforms ?? [],
      [SAMPLE_INVERSE_TEMPERATURE]: [o.draw?.inverseTemperature ?? 1],
    };
    const data = packStep(o.packed, batch, seq, ids, pos, (name) => values[name]);
    feeds[STEP_INPUT] = new ort.Tensor("float32", data, [batch, data.length / batch]);
    return { feeds, capacity, length, mask, positions };
  }
  feeds.input_ids = new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [batch, seq]);
  if (o.positionIds) feeds.position_ids = new ort.Tensor("int64", BigInt64Array.from(pos, BigInt), [batch, seq]);
  if (fixed) feeds[SEQLENS_K] = new ort.Tensor("int32", seqlens, [batch]);
  if (o.draw) {
    feeds[SAMPLE_UNIFORM] = new ort.Tensor("float32", o.draw.uniforms, [batch]);
    feeds[SAMPLE_INVERSE_TEMPERATURE] = new ort.Tensor("float32", Float32Array.of(o.draw.inverseTemperature), [1]);
  }
  return { feeds, capacity, length, mask, positions };
}

/** A 0/1 mask as int64, writing only the ones: a BigInt made per entry cost several ms a step at K = 256. */
function int64Mask(mask: Uint8Array): BigInt64Array {
  const out = new BigInt64Array(mask.length);
  for (let i = 0; i < mask.length; i++) if (mask[i]) out[i] = 1n;
  return out;
}
