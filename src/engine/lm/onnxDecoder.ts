/**
 * A CausalLM over an ONNX decoder with the Optimum / transformers.js interface (input_ids,
 * attention_mask, position_ids, past_key_values.{i}.key|value → logits, present.{i}.key|value, and
 * optionally last_hidden_state), run by onnxruntime-node. The KV cache stays in the runtime's tensors
 * and is reordered by row without recomputing anything.
 */
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import { CausalLM, DecoderState, StepOutput } from "./causalLm";
import { candidates, DeviceAttempt, DeviceRequest, describeDeviceChoice, precheck } from "./device";
import { DecoderConfig, ModelFolder, ModelFolderError } from "./modelFolder";

type FloatType = "float32" | "float16";
type FloatData = Float32Array | Uint16Array;

export interface OnnxDecoderOptions {
  /** Intra-op threads; defaults to the machine's parallelism. */
  threads?: number;
  /** Where to run; `auto` picks the most capable available and falls back to the CPU. Default cpu. */
  device?: DeviceRequest;
}

const firstLine = (s: string) => s.split("\n")[0].replace(/^.*?\] /, "").slice(0, 200);

/**
 * The KV cache of a batch: 2 × layers tensors [batch, kvHeads, length, headDim], plus, per row, which
 * cache positions hold real tokens (held rows get masked positions) and the next position id.
 */
export class KvCache implements DecoderState {
  private disposed = false;

  constructor(
    readonly tensors: ort.Tensor[],
    readonly batch: number,
    readonly length: number,
    /** batch × length: 1 where the row attends to that cache position. */
    readonly mask: Uint8Array,
    /** Per row: the position id of its next real token. */
    readonly positions: Int32Array,
  ) {}

  select(rows: readonly number[]): KvCache {
    this.check();
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= this.batch) throw new RangeError(`row ${r} is not in a batch of ${this.batch}`);
    }
    const tensors = this.tensors.map((t) => {
      const src = t.data as FloatData;
      const out = gatherRows(src, src.length / this.batch, rows);
      return new ort.Tensor(t.type as FloatType, out, [rows.length, t.dims[1], t.dims[2], t.dims[3]]);
    });
    const positions = Int32Array.from(rows, (r) => this.positions[r]);
    return new KvCache(tensors, rows.length, this.length, gatherRows(this.mask, this.length, rows), positions);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.tensors) t.dispose();
  }

  private check(): void {
    if (this.disposed) throw new Error("KV cache used after it was disposed");
  }
}

function gatherRows<T extends FloatData | Uint8Array>(src: T, rowSize: number, rows: readonly number[]): T {
  const out = new (src.constructor as { new (n: number): T })(rows.length * rowSize);
  rows.forEach((r, i) => out.set(src.subarray(r * rowSize, (r + 1) * rowSize), i * rowSize));
  return out;
}

/** fp16 bits → fp32, for models exported in half precision. */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

function toFloat32(t: ort.Tensor): Float32Array {
  if (t.type === "float32") return t.data as Float32Array;
  if (t.type === "float16") {
    const src = t.data as Uint16Array;
    const out = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]);
    return out;
  }
  throw new Error(`unsupported output type ${t.type}`);
}

/** Copies the last position of a [batch, seq, width] tensor into a batch × width array. */
function lastPosition(t: ort.Tensor): Float32Array {
  const [batch, seq, width] = t.dims as number[];
  const data = toFloat32(t);
  if (seq === 1) return data;
  const out = new Float32Array(batch * width);
  for (let b = 0; b < batch; b++) out.set(data.subarray((b * seq + seq - 1) * width, (b * seq + seq) * width), b * width);
  return out;
}

export class OnnxDecoder implements CausalLM {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly deviceChoice: string;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly config: DecoderConfig,
    private readonly kvType: FloatType,
    private readonly hasPositionIds: boolean,
    private readonly hasHidden: boolean,
    private readonly padId: number,
    readonly device: string,
    /** Every device tried, with the reason each unused one was skipped. */
    readonly deviceAttempts: readonly DeviceAttempt[],
  ) {
    this.vocabSize = config.vocabSize;
    this.hiddenSize = config.hiddenSize;
    this.deviceChoice = describeDeviceChoice(deviceAttempts);
  }

  static async load(folder: ModelFolder, options: OnnxDecoderOptions = {}): Promise<OnnxDecoder> {
    const threads = options.threads ?? Math.max(1, availableParallelism());
    const attempts: DeviceAttempt[] = [];
    const request = options.device ?? "cpu";
    for (const device of candidates(request)) {
      const reason = precheck(device);
      if (reason) {
        attempts.push({ device, skipped: reason });
        continue;
      }
      let session: ort.InferenceSession;
      try {
        session = await ort.InferenceSession.create(folder.onnxPath, {
          executionProviders: [device],
          intraOpNumThreads: threads,
          interOpNumThreads: 1,
          graphOptimizationLevel: "all",
        });
      } catch (e) {
        const message = (e as Error).message;
        if (device !== "cpu" && !/protobuf|parse|invalid model|load model/i.test(message)) {
          attempts.push({ device, skipped: firstLine(message) });
          continue;
        }
        throw new ModelFolderError(`${folder.onnxPath} could not be loaded by onnxruntime: ${message}`);
      }
      attempts.push({ device });
      const { kvType, hasPositionIds, hasHidden } = checkInterface(session, folder);
      const where = device === "cpu" ? `cpu (onnxruntime-node, ${threads} threads)` : `${device} (onnxruntime-node)`;
      return new OnnxDecoder(session, folder.config, kvType, hasPositionIds, hasHidden, folder.config.padTokenId ?? 0, where, attempts);
    }
    throw new Error(`no device could run the model: ${describeDeviceChoice(attempts)}${request === "auto" ? "" : "; try --device auto or cpu"}`);
  }

  async prefill(tokens: readonly number[]): Promise<StepOutput> {
    if (!tokens.length) throw new Error("prefill needs at least one token");
    return this.run(this.emptyCache(1), [Array.from(tokens)]);
  }

  async step(state: DecoderState, tokens: readonly (number | null)[]): Promise<StepOutput> {
    if (!(state instanceof KvCache)) throw new TypeError("OnnxDecoder.step needs a state made by this decoder");
    if (tokens.length !== state.batch) throw new RangeError(`step got ${tokens.length} tokens for a batch of ${state.batch}`);
    return this.run(state, tokens.map((t) => [t]));
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }

  private emptyCache(batch: number): KvCache {
    const c = this.config;
    const dims = [batch, c.numKvHeads, 0, c.headDim];
    const make = () => new ort.Tensor(this.kvType, this.kvType === "float32" ? new Float32Array(0) : new Uint16Array(0), dims);
    return new KvCache(Array.from({ length: 2 * c.numLayers }, make), batch, 0, new Uint8Array(0), new Int32Array(batch));
  }

  /** One forward pass over `rows` (equal lengths; a null token holds its row with a masked position). */
  private async run(cache: KvCache, rows: (number | null)[][]): Promise<StepOutput> {
    const batch = rows.length;
    const seq = rows[0].length;
    const total = cache.length + seq;
    const ids = new BigInt64Array(batch * seq);
    const pos = new BigInt64Array(batch * seq);
    const mask = new Uint8Array(batch * total);
    const positions = Int32Array.from(cache.positions);
    for (let b = 0; b < batch; b++) {
      mask.set(cache.mask.subarray(b * cache.length, (b + 1) * cache.length), b * total);
      for (let s = 0; s < seq; s++) {
        const tok = rows[b][s];
        ids[b * seq + s] = BigInt(tok ?? this.padId);
        pos[b * seq + s] = BigInt(positions[b]);
        if (tok !== null) {
          mask[b * total + cache.length + s] = 1;
          positions[b]++;
        }
      }
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", ids, [batch, seq]),
      attention_mask: new ort.Tensor("int64", BigInt64Array.from(mask, (m) => BigInt(m)), [batch, total]),
    };
    if (this.hasPositionIds) feeds.position_ids = new ort.Tensor("int64", pos, [batch, seq]);
    for (let i = 0; i < this.config.numLayers; i++) {
      feeds[`past_key_values.${i}.key`] = cache.tensors[2 * i];
      feeds[`past_key_values.${i}.value`] = cache.tensors[2 * i + 1];
    }
    const out = await this.session.run(feeds);
    cache.dispose();
    const presents: ort.Tensor[] = [];
    for (let i = 0; i < this.config.numLayers; i++) presents.push(out[`present.${i}.key`], out[`present.${i}.value`]);
    const logits = lastPosition(out.logits);
    for (let b = 0; b < batch; b++) {
      if (rows[b][seq - 1] === null) continue;
      for (let i = b * this.vocabSize; i < (b + 1) * this.vocabSize; i++) {
        if (Number.isNaN(logits[i])) throw new Error(`the model produced NaN logits (row ${b} of ${batch}, position ${positions[b] - 1})`);
      }
    }
    const hidden = this.hasHidden ? lastPosition(out.last_hidden_state) : undefined;
    return { logits, hidden, state: new KvCache(presents, batch, total, mask, positions) };
  }
}

/** Checks the session's inputs and outputs against the decoder interface; names what is missing. */
function checkInterface(session: ort.InferenceSession, folder: ModelFolder) {
  const file = folder.onnxPath;
  const inputs = new Set(session.inputNames);
  const outputs = new Set(session.outputNames);
  const need = (set: Set<string>, name: string, kind: string) => {
    if (!set.has(name)) throw new ModelFolderError(`${file} lacks the ${kind} "${name}" of the decoder interface (has: ${[...set].join(", ")})`);
  };
  need(inputs, "input_ids", "input");
  need(inputs, "attention_mask", "input");
  need(outputs, "logits", "output");
  const layers = [...inputs].filter((n) => /^past_key_values\.\d+\.key$/.test(n)).length;
  if (layers !== folder.config.numLayers) {
    throw new ModelFolderError(`${file} has ${layers} past_key_values layers but config.json says num_hidden_layers ${folder.config.numLayers}`);
  }
  for (let i = 0; i < layers; i++) {
    for (const kv of ["key", "value"]) {
      need(inputs, `past_key_values.${i}.${kv}`, "input");
      need(outputs, `present.${i}.${kv}`, "output");
    }
  }
  const meta = session.inputMetadata.find((m) => m.name === "past_key_values.0.key");
  const kvType = meta && meta.isTensor ? meta.type : "float32";
  if (kvType !== "float32" && kvType !== "float16") throw new ModelFolderError(`${file}: unsupported KV cache type ${kvType}`);
  if (meta && meta.isTensor) {
    const [, heads, , dim] = meta.shape;
    if ((typeof heads === "number" && heads !== folder.config.numKvHeads) || (typeof dim === "number" && dim !== folder.config.headDim)) {
      throw new ModelFolderError(
        `${file}: KV cache shape [*, ${heads}, *, ${dim}] disagrees with config.json (${folder.config.numKvHeads} KV heads of ${folder.config.headDim})`,
      );
    }
  }
  return { kvType: kvType as FloatType, hasPositionIds: inputs.has("position_ids"), hasHidden: outputs.has("last_hidden_state") };
}
