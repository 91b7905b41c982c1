/**
 * The KV cache of an ONNX decoder as the engine's DecoderState: the runtime's tensors (on the CPU, or
 * GPU buffers), shared by the states that still read them, and reordered by row only when the next
 * step needs it (kvReorder.ts).
 */
import * as ort from "onnxruntime-node";
import { DecoderState } from "../causalLm";
import { gatherRows } from "./tensorData";

export type FloatType = "float32" | "float16";

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
 * Selecting rows copies nothing: it records which stored row each new row reads, and the decoder
 * gathers them before the next step, where the cache is, when they are not the stored rows in order.
 */
export class KvCache implements DecoderState {
  private disposed = false;

  constructor(
    private readonly store: SharedTensors,
    readonly batch: number,
    readonly length: number,
    /** batch × length: 1 where the row attends to that cache position (empty for a fixed-capacity cache, whose rows' positions say which slots are filled). */
    readonly mask: Uint8Array,
    /** Per row: the position id of its next real token. */
    readonly positions: Int32Array,
    /** Per row: the stored row it reads, or null when rows are stored in order. */
    private readonly gather: readonly number[] | null,
  ) {}

  static fromTensors(tensors: ort.Tensor[], batch: number, length: number, mask: Uint8Array, positions: Int32Array): KvCache {
    return new KvCache(new SharedTensors(tensors), batch, length, mask, positions, null);
  }

  get tensors(): readonly ort.Tensor[] {
    return this.store.tensors;
  }

  /** Rows the runtime's tensors hold: the batch, or more where the decoder pads it (a fixed-capacity cache). */
  get storeBatch(): number {
    return this.store.batch;
  }

  /** The stored row each row of this state reads, in order. */
  storedRows(): number[] {
    return this.gather ? [...this.gather] : Array.from({ length: this.batch }, (_, i) => i);
  }

  select(rows: readonly number[]): KvCache {
    this.check();
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= this.batch) throw new RangeError(`row ${r} is not in a batch of ${this.batch}`);
    }
    const mask = this.mask.length ? gatherRows(this.mask, this.length, rows) : this.mask;
    const positions = Int32Array.from(rows, (r) => this.positions[r]);
    const gather = rows.map((r) => (this.gather ? this.gather[r] : r));
    return new KvCache(this.store.retain(), rows.length, this.length, mask, positions, gather);
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
