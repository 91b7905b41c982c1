/**
 * Reorders a KV cache by row where it lives (a prompt broadcast to K particles, a resampling by
 * ancestor, finished rows dropped), only for a step whose rows changed: a gather inside the model's
 * graph copied the whole cache on every step, reordered or not (on an H100, 13 ms of a K = 256 step's
 * 51 ms of GPU time; on the CPU, in onnxruntime's profile, a quarter of the shipped model's pass at
 * K = 64). On a GPU a small graph gathers every past_key_values tensor along the batch axis there; on
 * the CPU the rows are copied here (a session run made new output buffers each time, several ms for
 * a 7 MB cache).
 */
import * as ort from "onnxruntime-node";
import { Device } from "./device";
import { DTYPE, GRAPH, modelBytes, node, tensorValueInfo } from "./onnx/graphBuild";
import { bytesField } from "./onnx/protoWire";
import { createSideSession, int64Tensor, releaseSession, runSideSession } from "./sideSessions";
import { gatherRows } from "./tensorData";

const ROWS = "rows";
const OPSET_VERSION = 13;
const input = (i: number) => `kv_${i}`;
const output = (i: number) => `kv_${i}_reordered`;

/** The reorder graph for `count` tensors [batch, heads, length, headDim] of element type `elem`. */
export function kvReorderModel(count: number, elem: number): Uint8Array {
  const body: Uint8Array[] = [bytesField(GRAPH.input, tensorValueInfo(ROWS, DTYPE.int64, ["rows"]))];
  for (let i = 0; i < count; i++) {
    body.push(
      bytesField(GRAPH.node, node("Gather", [input(i), ROWS], [output(i)], `kv_reorder/${i}`, { axis: 0 })),
      bytesField(GRAPH.input, tensorValueInfo(input(i), elem, ["batch", "heads", "length", "head_dim"])),
      bytesField(GRAPH.output, tensorValueInfo(output(i), elem, ["rows", "heads", "length", "head_dim"])),
    );
  }
  return modelBytes("kv_reorder", body, OPSET_VERSION);
}

let reorders = 0;
/** How many reorders have run, across decoders: tests check that steps whose rows did not change run none. */
export function kvReordersRun(): number {
  return reorders;
}

export class KvReorder {
  private session?: Promise<ort.InferenceSession>;

  constructor(
    private readonly device: Device,
    private readonly threads: number,
    private readonly count: number,
    /** DTYPE of the cache's tensors. */
    private readonly elem: number,
    /** How failures are named (the decoder's device description). */
    private readonly where: string,
  ) {}

  /** New tensors holding `rows` of `tensors`, on the same device; the caller disposes them. */
  async reorder(tensors: readonly ort.Tensor[], rows: readonly number[]): Promise<ort.Tensor[]> {
    reorders++;
    if (this.device === "cpu") {
      return tensors.map((t) => {
        const data = t.data as Float32Array | Uint16Array;
        const [batch, ...rest] = t.dims;
        return new ort.Tensor(t.type as "float32" | "float16", gatherRows(data, batch ? data.length / batch : 0, rows), [rows.length, ...rest]);
      });
    }
    this.session ??= createSideSession(kvReorderModel(this.count, this.elem), this.device, this.threads, tensors.map((_, i) => output(i)));
    const feeds: Record<string, ort.Tensor> = { [ROWS]: int64Tensor(rows) };
    tensors.forEach((t, i) => (feeds[input(i)] = t));
    const out = await runSideSession(this.session, feeds, this.device, this.where, "reorder the KV cache");
    return tensors.map((_, i) => out[output(i)]);
  }

  async dispose(): Promise<void> {
    if (this.session) await releaseSession(this.session);
  }
}
