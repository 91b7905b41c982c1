/**
 * How many new tokens one pass of the fused attention may take on a GPU and still compute what the
 * CPU does. Why: onnxruntime's WebGPU attention runs several tokens at once (a prompt, batch 1) with
 * a flash-attention kernel built on subgroups, and on an adapter with small subgroups (Mesa's
 * lavapipe; some integrated GPUs) it is wrong from 32 new tokens on: a 32-token prompt's logits off by
 * 0.3 to 0.6 (README, "On a GPU"), while decode steps and shorter chunks are right. The decoder then
 * prefills long prompts in chunks this size.
 *
 * The check runs one attention node of the model's own heads, as the prepared graph uses it, on the
 * GPU and on the CPU, for each chunk size from the largest down, after a short past.
 */
import * as ort from "onnxruntime-node";
import { Device } from "./device";
import { GRAPH, MODEL, modelBytes, msOpsetImport, MS_DOMAIN, node, tensorValueInfo, DTYPE } from "../onnx/graphBuild";
import { bytesField, concat } from "../onnx/protoWire";
import { createSideSession, releaseSession } from "./sideSessions";
import { WebGpuValidation } from "../../environment";

/** Chunk sizes tried, largest first; a pass of one token (a decode step) is taken as right. */
export const CHUNKS = [256, 128, 64, 32, 16, 8, 4, 2] as const;
const PAST = 5;

/** One attention node with a past: MultiHeadAttention with a causal bias, or GroupQueryAttention over a capacity. */
function attentionModel(kind: "mha" | "gqa", heads: number, headDim: number): Uint8Array {
  const width = heads * headDim;
  const io = [
    ...["q", "k", "v"].map((n) => bytesField(GRAPH.input, tensorValueInfo(n, DTYPE.float, [1, "S", width]))),
    ...["past_key", "past_value"].map((n) => bytesField(GRAPH.input, tensorValueInfo(n, DTYPE.float, [1, heads, "P", headDim]))),
    bytesField(GRAPH.output, tensorValueInfo("out", DTYPE.float, [1, "S", width])),
    ...["present_key", "present_value"].map((n) => bytesField(GRAPH.output, tensorValueInfo(n, DTYPE.float, [1, heads, "T", headDim]))),
  ];
  const attention =
    kind === "mha"
      ? node(
          "MultiHeadAttention",
          ["q", "k", "v", "", "", "bias", "past_key", "past_value"],
          ["out", "present_key", "present_value"],
          "attention",
          { num_heads: heads },
          MS_DOMAIN,
        )
      : node(
          "GroupQueryAttention",
          ["q", "k", "v", "past_key", "past_value", "seqlens_k", "total_len"],
          ["out", "present_key", "present_value"],
          "attention",
          { num_heads: heads, kv_num_heads: heads },
          MS_DOMAIN,
        );
  if (kind === "mha") io.push(bytesField(GRAPH.input, tensorValueInfo("bias", DTYPE.float, [1, 1, "S", "T"])));
  else
    io.push(
      bytesField(GRAPH.input, tensorValueInfo("seqlens_k", DTYPE.int32, [1])),
      bytesField(GRAPH.input, tensorValueInfo("total_len", DTYPE.int32, [])),
    );
  return concat([
    modelBytes("attention_check", [bytesField(GRAPH.node, attention), ...io], 17),
    bytesField(MODEL.opsetImport, msOpsetImport()),
  ]);
}

/** Inputs for `chunk` new tokens after PAST: values that differ by position, so a wrong tile shows. */
function feeds(kind: "mha" | "gqa", heads: number, headDim: number, chunk: number): Record<string, ort.Tensor> {
  const width = heads * headDim;
  const wave = (n: number, phase: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(0.37 * i + phase));
  const total = PAST + chunk;
  const pastLength = kind === "gqa" ? total : PAST; // GroupQueryAttention: a capacity with room for the chunk
  const past = (phase: number) => {
    const data = new Float32Array(heads * pastLength * headDim);
    for (let h = 0; h < heads; h++) data.set(wave(PAST * headDim, phase + h), h * pastLength * headDim);
    return new ort.Tensor("float32", data, [1, heads, pastLength, headDim]);
  };
  const out: Record<string, ort.Tensor> = {
    q: new ort.Tensor("float32", wave(chunk * width, 0.1), [1, chunk, width]),
    k: new ort.Tensor("float32", wave(chunk * width, 1.3), [1, chunk, width]),
    v: new ort.Tensor("float32", wave(chunk * width, 2.9), [1, chunk, width]),
    past_key: past(4.1),
    past_value: past(5.7),
  };
  if (kind === "mha") {
    // The exporters' causal mask: new token i sees the past and new tokens up to itself.
    const bias = new Float32Array(chunk * total);
    for (let i = 0; i < chunk; i++) for (let j = PAST + i + 1; j < total; j++) bias[i * total + j] = -1e9;
    out.bias = new ort.Tensor("float32", bias, [1, 1, chunk, total]);
  } else {
    out.seqlens_k = new ort.Tensor("int32", Int32Array.of(total - 1), [1]);
    out.total_len = new ort.Tensor("int32", Int32Array.of(total), []);
  }
  return out;
}

/**
 * The most new tokens one pass may take on `device` (a CHUNKS entry, or 1), for the fused attention
 * of `kind` with these heads: CHUNKS[0] when every size agrees with the CPU within 1e-3. On WebGPU,
 * `validation` is the decoder's validation mode (OnnxDecoderOptions.webgpuValidation).
 */
export async function largestRightChunk(
  device: Device,
  kind: "mha" | "gqa",
  heads: number,
  headDim: number,
  validation?: WebGpuValidation,
): Promise<number> {
  const model = attentionModel(kind, heads, headDim);
  const gpu = createSideSession(model, device, 1, [], validation);
  const cpu = createSideSession(model, "cpu", 1);
  try {
    for (const chunk of CHUNKS) {
      const input = feeds(kind, heads, headDim, chunk);
      const [a, b] = [(await (await gpu).run(input)).out, (await (await cpu).run(input)).out];
      const [x, y] = [(await a.getData()) as Float32Array, b.data as Float32Array];
      let worst = 0;
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
      if (worst < 1e-3) return chunk;
    }
    return 1;
  } finally {
    await releaseSession(gpu);
    await releaseSession(cpu);
  }
}
