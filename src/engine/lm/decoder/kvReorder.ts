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
import { DTYPE, GRAPH, modelBytes, node, tensorValueInfo } from "../onnx/graphBuild";
import { bytesField } from "../onnx/protoWire";
import { createSideSession, int64Tensor, releaseSession, runSideSession } from "./sideSessions";
import { gatherRows } from "./tensorData";
import { WebGpuValidation } from "../../environment";

const ROWS = "rows";
const PADS = "pads";
const OPSET_VERSION = 13;
const input = (i: number) => `kv_${i}`;
const output = (i: number) => `kv_${i}_reordered`;

/**
 * The reorder graph for `count` tensors [batch, heads, length, headDim] of element type `elem`; with
 * `grow`, each gathered tensor is then padded with zeros along the length (the input PADS, onnx Pad's
 * begins and ends): a fixed-capacity cache given more capacity.
 */
export function kvReorderModel(count: number, elem: number, grow = false): Uint8Array {
  const body: Uint8Array[] = [bytesField(GRAPH.input, tensorValueInfo(ROWS, DTYPE.int64, ["rows"]))];
  if (grow) body.push(bytesField(GRAPH.input, tensorValueInfo(PADS, DTYPE.int64, [8])));
  for (let i = 0; i < count; i++) {
    const gathered = grow ? `${output(i)}_rows` : output(i);
    body.push(
      bytesField(GRAPH.node, node("Gather", [input(i), ROWS], [gathered], `kv_reorder/${i}`, { axis: 0 })),
      bytesField(GRAPH.input, tensorValueInfo(input(i), elem, ["batch", "heads", "length", "head_dim"])),
      bytesField(GRAPH.output, tensorValueInfo(output(i), elem, ["rows", "heads", grow ? "capacity" : "length", "head_dim"])),
    );
    if (grow) body.push(bytesField(GRAPH.node, node("Pad", [gathered, PADS], [output(i)], `kv_grow/${i}`)));
  }
  return modelBytes(grow ? "kv_grow" : "kv_reorder", body, OPSET_VERSION);
}

let reorders = 0;
/** How many reorders have run, across decoders: tests check that steps whose rows did not change run none. */
export function kvReordersRun(): number {
  return reorders;
}

export class KvReorder {
  private session?: Promise<ort.InferenceSession>;
  private growSession?: Promise<ort.InferenceSession>;

  constructor(
    private readonly device: Device,
    private readonly threads: number,
    private readonly count: number,
    /** DTYPE of the cache's tensors. */
    private readonly elem: number,
    /** How failures are named (the decoder's device description). */
    private readonly where: string,
    /** On WebGPU, the decoder's validation mode (OnnxDecoderOptions.webgpuValidation). */
    private readonly validation?: WebGpuValidation,
  ) {}

  /** New tensors holding `rows` of `tensors`, on the same device; the caller disposes them. */
  async reorder(tensors: readonly ort.Tensor[], rows: readonly number[]): Promise<ort.Tensor[]> {
    reorders++;
    if (this.device === "cpu") {
      return tensors.map((t) => {
        const data = t.data as Float32Array | Uint16Array;
        const [batch, ...rest] = t.dims;
        return new ort.Tensor(t.type as "float32" | "float16", gatherRows(data, batch ? data.length / batch : 0, rows), [
          rows.length,
          ...rest,
        ]);
      });
    }
    this.session ??= createSideSession(
      kvReorderModel(this.count, this.elem),
      this.device,
      this.threads,
      tensors.map((_, i) => output(i)),
      this.validation,
    );
    const feeds: Record<string, ort.Tensor> = { [ROWS]: int64Tensor(rows) };
    tensors.forEach((t, i) => (feeds[input(i)] = t));
    const out = await runSideSession(this.session, feeds, this.device, this.where, "reorder the KV cache");
    return tensors.map((_, i) => out[output(i)]);
  }

  /**
   * New tensors holding `rows` of `tensors` with `capacity` positions each (the filled ones first, as
   * they were; zeros after), on the same device; the caller disposes them.
   */
  async grow(tensors: readonly ort.Tensor[], rows: readonly number[], capacity: number): Promise<ort.Tensor[]> {
    const length = tensors[0]?.dims[2] ?? 0;
    if (!(capacity >= length)) throw new RangeError(`a KV cache of ${length} positions cannot shrink to ${capacity}`);
    const batch = tensors[0]?.dims[0] ?? 0;
    if (rows.some((r) => !Number.isInteger(r) || r < 0 || r >= batch))
      throw new RangeError(`rows ${rows.join(", ")} are not all in a batch of ${batch}`);
    if (this.device === "cpu") {
      return tensors.map((t) => {
        const data = t.data as Float32Array | Uint16Array;
        const [, heads, , dim] = t.dims;
        const out = new (data.constructor as { new (n: number): Float32Array | Uint16Array })(rows.length * heads * capacity * dim);
        rows.forEach((r, i) => {
          for (let h = 0; h < heads; h++)
            out.set(
              data.subarray((r * heads + h) * length * dim, ((r * heads + h) * length + length) * dim),
              (i * heads + h) * capacity * dim,
            );
        });
        return new ort.Tensor(t.type as "float32" | "float16", out, [rows.length, heads, capacity, dim]);
      });
    }
    this.growSession ??= createSideSession(
      kvReorderModel(this.count, this.elem, true),
      this.device,
      this.threads,
      tensors.map((_, i) => output(i)),
      this.validation,
    );
    const feeds: Record<string, ort.Tensor> = { [ROWS]: int64Tensor(rows), [PADS]: int64Tensor([0, 0, 0, 0, 0, 0, capacity - length, 0]) };
    tensors.forEach((t, i) => (feeds[input(i)] = t));
    const out = await runSideSession(this.growSession, feeds, this.device, this.where, "give the KV cache more capacity");
    return tensors.map((_, i) => out[output(i)]);
  }

  /** Releases its sessions (a later reorder opens them again). */
  async dispose(): Promise<void> {
    const sessions = [this.session, this.growSession];
    this.session = this.growSession = undefined;
    for (const s of sessions) if (s) await releaseSession(s);
  }
}
