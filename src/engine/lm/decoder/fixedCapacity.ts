/**
 * What a fixed-capacity KV cache (fuseAttention.ts) needs beside its graph: whether it was asked for,
 * the batch a pass runs, and the bookkeeping that bounds what onnxruntime keeps for it. Its exact-size
 * buffer cache never frees a buffer, so every distinct tensor shape a process makes stays allocated.
 */
import * as ort from "onnxruntime-node";
import { Device } from "./device";
import { InputError } from "../../util/errors";
import { cacheBudgetMiBFromEnv } from "../../environment";

/**
 * Buffers onnxruntime keeps per cache shape: the tensors a pass reads, those it writes, and a
 * reorder's or growth's copies (measured on lavapipe: 3 sets, K = 16, 12 layers, capacity 256).
 */
const SETS_KEPT_PER_SHAPE = 3;

/**
 * Whether a decoder keeps its cache at a fixed capacity when neither the caller nor the environment says:
 * on a GPU, yes. Measured on an H100 (2026-11-26, GPT-2-small shape, K = 16): 7.8 ms a step against the
 * growing cache's 23.0, whose every step makes each cache tensor anew. The CPU's allocator makes that
 * cheap, so there the growing cache stays, but for what the growing cache computes wrongly: a model
 * with a sliding window (onnxDecoder.ts) and a graph with its own GroupQueryAttention
 * (adoptGroupQueryAttention.ts).
 */
export function fixedCapacityDefault(device: Device): boolean {
  return device !== "cpu";
}

/**
 * OnnxDecoderOptions.cacheBudget in bytes: as given, else on a GPU TWISTED_SMC_CACHE_BUDGET_MB MiB (default
 * CACHE_BUDGET_MB: environment.ts) read from `env` (process.env unless a test passes another), on the CPU none.
 */
export function cacheBudgetFor(device: Device, given?: number, env?: NodeJS.ProcessEnv): number {
  if (given === undefined) return device === "cpu" ? Infinity : cacheBudgetMiBFromEnv(env) * 2 ** 20;
  if (!(given >= 0))
    throw new InputError(`the cache budget must be a number of bytes ≥ 0 (TWISTED_SMC_CACHE_BUDGET_MB: MiB), got ${given}`);
  return given;
}

/**
 * The batch a fixed-capacity cache's pass runs on a GPU for `rows` rows: the next power of two, padded
 * with held rows, so that a batch shrinking as particles finish makes log₂ K shapes rather than K.
 */
export const physicalBatch = (rows: number) => 2 ** Math.ceil(Math.log2(Math.max(1, rows)));

/** The cache shapes a decoder's passes made, and the bytes onnxruntime keeps for them. */
export class RetainedCacheShapes {
  private readonly shapes = new Map<string, number>();

  /** Notes a pass's present tensors (every layer's of one shape, [batch, heads, capacity, headDim]); a shape seen before costs a lookup. */
  record(presents: readonly ort.Tensor[]): void {
    const key = presents[0]?.dims.join("×") ?? "";
    if (this.shapes.has(key)) return;
    const bytes = presents.reduce((sum, t) => sum + t.dims.reduce((a, d) => a * d, 1) * (t.type === "float16" ? 2 : 4), 0);
    this.shapes.set(key, SETS_KEPT_PER_SHAPE * bytes);
  }

  get bytes(): number {
    let sum = 0;
    for (const bytes of this.shapes.values()) sum += bytes;
    return sum;
  }

  clear(): void {
    this.shapes.clear();
  }
}
