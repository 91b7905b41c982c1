/**
 * The KV cache of an ONNX decoder as the engine's DecoderState: the runtime's tensors (on the CPU, or
 * GPU buffers), shared by the states that still read them, and reordered by row without a copy when
 * the prepared graph gathers them.
 */
import * as ort from "onnxruntime-node";
import { DecoderState } from "./causalLm";
import { gatherRows } from "./tensorData";

export type FloatType = "float32" | "float16";
type FloatData = Float32Array | Uint16Array;

let liveStores = 0;
/** How many KV caches (sets of runtime tensors) are alive, across decoders: tests check nothing leaks. */
export function liveKvCaches(): number {
  return liveStores;
}

/** Tensors shared by the states that still read them; freed when the last one lets go. */
class SharedTensors {
  private refs = 1;
  constructor(readonly tensors: ort.Tensor[]) {
    liveStores++;
  }
  get batch(): number {
    return this.tensors[0]?.dims[0] ?? 0;
  }
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs !== 0) return;
    liveStores--;
    for (const t of this.tensors) t.dispose();
  }
}

/**
 * The KV cache of a batch: 2 × layers tensors [batch, kvHeads, length, headDim], plus, per row, which
 * cache positions hold real tokens (held rows get masked positions) and the next position id.
 *
 * With a prepared graph (an `ancestor_index` input), selecting rows copies nothing: it records which
 * stored row each new row reads, and the graph gathers them at the next step, where the model runs.
 * Without one, rows are copied here.
 */
export class KvCache implements DecoderState {
  private disposed = false;

  constructor(
    private readonly store: SharedTensors,
    readonly batch: number,
    readonly length: number,
    /** batch × length: 1 where the row attends to that cache position. */
    readonly mask: Uint8Array,
    /** Per row: the position id of its next real token. */
    readonly positions: Int32Array,
    /** Per row: the stored row it reads (lazy selection), or null when rows are stored in order. */
    readonly gather: readonly number[] | null,
    private readonly lazy: boolean,
  ) {}

  static fromTensors(tensors: ort.Tensor[], batch: number, length: number, mask: Uint8Array, positions: Int32Array, lazy: boolean): KvCache {
    return new KvCache(new SharedTensors(tensors), batch, length, mask, positions, null, lazy);
  }

  get tensors(): readonly ort.Tensor[] {
    return this.store.tensors;
  }

  /** The row indices the graph must gather, or undefined when no reordering is pending. */
  ancestorIndex(): number[] {
    return this.gather ? [...this.gather] : Array.from({ length: this.store.batch }, (_, i) => i);
  }

  select(rows: readonly number[]): KvCache {
    this.check();
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= this.batch) throw new RangeError(`row ${r} is not in a batch of ${this.batch}`);
    }
    const mask = gatherRows(this.mask, this.length, rows);
    const positions = Int32Array.from(rows, (r) => this.positions[r]);
    if (this.lazy) {
      const gather = rows.map((r) => (this.gather ? this.gather[r] : r));
      return new KvCache(this.store.retain(), rows.length, this.length, mask, positions, gather, true);
    }
    const tensors = this.store.tensors.map((t) => {
      const src = t.data as FloatData;
      const out = gatherRows(src, src.length / this.batch, rows);
      return new ort.Tensor(t.type as FloatType, out, [rows.length, t.dims[1], t.dims[2], t.dims[3]]);
    });
    return KvCache.fromTensors(tensors, rows.length, this.length, mask, positions, false);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.store.release();
  }

  private check(): void {
    if (this.disposed) throw new Error("KV cache used after it was disposed");
  }
}
