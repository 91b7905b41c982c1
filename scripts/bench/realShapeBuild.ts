/**
 * The models of `npm run bench:real` (scripts/bench/realShape.ts), built at bench time into DIR from one
 * set of random Qwen2.5-0.5B-shaped weights (scripts/fixtures/realLayouts.ts), never committed:
 *
 * - DIR/fp32: Optimum's model.onnx + model.onnx_data (a 0.5B fp32 graph does not fit one protobuf);
 * - DIR/int8: onnx/model_int8.onnx (quantize_dynamic's MatMulInteger pattern);
 * - DIR/q4: onnx/model_q4.onnx (MatMulNBits, 4-bit blocks of 32, accuracy_level unset as the fixture writes it);
 * - DIR/q4-acc4: the same graph with accuracy_level 4 on every MatMulNBits (int8 compute, what
 *   onnxruntime-genai's builder sets for the CPU), made by editing the attribute here;
 * - DIR/genai-q4: model.onnx as onnxruntime-genai's model builder writes it (GroupQueryAttention with
 *   the rotary inside, MatMulNBits), which the engine runs over a fixed-capacity cache on the CPU too;
 * - DIR/weights.safetensors: the fp32 weights for the PyTorch reference (scripts/bench/qwen2_reference.py),
 *   projections K × N (input × output) as decoderGraph.ts holds them;
 * - DIR/check.json + DIR/check_logits.f32: token ids and the fp32 ONNX graph's logits over them
 *   (onnxruntime-node, no engine), which the PyTorch forward must reproduce before it is timed.
 *
 *   npx tsx scripts/bench/realShapeBuild.ts DIR [THREADS]
 *
 * The weights (2 GB) are made once and written in every precision one folder at a time.
 */
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { bytesField, concat, fields, message, text } from "../../src/engine/lm/onnx/protoWire";
import { GRAPH, MODEL, NODE } from "../../src/engine/lm/onnx/graphBuild";
import { Rng } from "../../src/engine/util/rng";
import { DecoderWeights } from "../fixtures/decoderGraph";
import { QWEN25_05B, architectureOf, copyTokenizer, randomWeights, Widths, writeModelFolder } from "../fixtures/realLayouts";
import { toFloat32 } from "../../src/engine/lm/decoder/tensorData";

export const FAMILY = "qwen2.5";
export const WIDTHS = QWEN25_05B;
/** Token ids of the logits check (random ids, as decode-bench's prompt is). */
export const CHECK_TOKENS = 32;

/** The named fp32 tensors of Qwen2.5-shaped weights (of `widths`), as the PyTorch reference reads them. */
export function namedTensors(w: DecoderWeights, widths: Widths = WIDTHS): [string, number[], Float32Array][] {
  const { hidden: d, heads: H, kvHeads: KV, headDim: hd, intermediate: I, vocab: V } = architectureOf(FAMILY, widths);
  const out: [string, number[], Float32Array][] = [
    ["embed", [V, d], w.embed],
    ["final_norm", [d], w.finalNorm],
  ];
  w.layers.forEach((L, i) => {
    const p = `layers.${i}.`;
    out.push(
      [`${p}input_norm`, [d], L.inputNorm],
      [`${p}post_attention_norm`, [d], L.postAttentionNorm],
      [`${p}q`, [d, H * hd], L.q],
      [`${p}k`, [d, KV * hd], L.k],
      [`${p}v`, [d, KV * hd], L.v],
      [`${p}q_bias`, [H * hd], L.qBias!],
      [`${p}k_bias`, [KV * hd], L.kBias!],
      [`${p}v_bias`, [KV * hd], L.vBias!],
      [`${p}o`, [H * hd, d], L.o],
      [`${p}gate`, [d, I], L.gate],
      [`${p}up`, [d, I], L.up],
      [`${p}down`, [I, d], L.down],
    );
  });
  return out;
}

/** safetensors: an 8-byte little-endian header length, the JSON header, then the raw little-endian data. */
export function writeSafetensors(path: string, tensors: [string, number[], Float32Array][]): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8); // the data 8-byte aligned, as the format recommends
  const head = Buffer.alloc(8 + json.length);
  head.writeBigUInt64LE(BigInt(json.length), 0);
  head.write(json, 8, "utf8");
  const fd = openSync(path, "w");
  try {
    writeSync(fd, head);
    for (const [, , data] of tensors) {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      for (let done = 0; done < bytes.byteLength;) done += writeSync(fd, bytes, done);
    }
  } finally {
    closeSync(fd);
  }
}

const ATTR_INT = 2;

/** A copy of a model with `accuracy_level` set on every MatMulNBits node (the attribute appended; the fixture writes none). */
export function withAccuracyLevel(model: Uint8Array, level: number): { model: Uint8Array; nodes: number } {
  let nodes = 0;
  const attr = bytesField(
    NODE.attribute,
    message([
      [1, "accuracy_level"],
      [20, ATTR_INT],
      [3, level],
    ]),
  );
  const graphParts = (graph: Uint8Array) =>
    [...fields(graph)].map((f) => {
      if (f.field !== GRAPH.node) return f.raw;
      const isNBits = [...fields(f.value)].some((g) => g.field === NODE.opType && text(g) === "MatMulNBits");
      if (!isNBits) return f.raw;
      nodes++;
      return bytesField(GRAPH.node, concat([f.value, attr]));
    });
  const parts = [...fields(model)].map((f) => (f.field === MODEL.graph ? bytesField(MODEL.graph, concat(graphParts(f.value))) : f.raw));
  return { model: concat(parts), nodes };
}

/**
 * A Qwen2.5-shaped graph's logits (of `widths`) over `ids` (one row, no past), straight from
 * onnxruntime-node on the CPU; a half-precision graph's cache and logits are float16.
 */
export async function onnxLogits(modelPath: string, ids: number[], threads: number, widths: Widths = WIDTHS): Promise<Float32Array> {
  const arch = architectureOf(FAMILY, widths);
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: threads, interOpNumThreads: 1 });
  const n = ids.length;
  const i64 = (values: number[]) => new ort.Tensor("int64", BigInt64Array.from(values, BigInt), [1, values.length]);
  const feeds: Record<string, ort.Tensor> = {
    input_ids: i64(ids),
    attention_mask: i64(ids.map(() => 1)),
    position_ids: i64(ids.map((_, i) => i)),
  };
  const half = session.inputMetadata.some((m) => m.name === "past_key_values.0.key" && m.isTensor && m.type === "float16");
  for (let i = 0; i < arch.layers; i++)
    for (const kv of ["key", "value"])
      feeds[`past_key_values.${i}.${kv}`] = half
        ? new ort.Tensor("float16", new Uint16Array(0), [1, arch.kvHeads, 0, arch.headDim])
        : new ort.Tensor("float32", new Float32Array(0), [1, arch.kvHeads, 0, arch.headDim]);
  const out = await session.run(feeds, ["logits"]);
  const logits = Float32Array.from(toFloat32(out.logits));
  if (logits.length !== n * arch.vocab) throw new Error(`logits of ${logits.length} values, expected ${n} × ${arch.vocab}`);
  await session.release();
  return logits;
}

export async function build(dir: string, threads: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const log = (what: string) => console.error(`[build ${((performance.now() - t0) / 1000).toFixed(0)} s] ${what}`);
  let weights: DecoderWeights | undefined = randomWeights(FAMILY, WIDTHS);
  log("weights made");
  writeModelFolder(join(dir, "fp32"), FAMILY, { precision: "fp32", widths: WIDTHS, externalData: true, weights });
  log("fp32 written");
  writeSafetensors(join(dir, "weights.safetensors"), namedTensors(weights));
  log("weights.safetensors written");
  // int8 and q4 fit one protobuf (about 1.0 and 0.8 GB: the embedding stays fp32 for the Gather).
  writeModelFolder(join(dir, "int8"), FAMILY, { precision: "int8", widths: WIDTHS, weights });
  log("int8 written");
  const q4File = writeModelFolder(join(dir, "q4"), FAMILY, { precision: "q4", widths: WIDTHS, weights });
  log("q4 written");
  writeModelFolder(join(dir, "genai-q4"), FAMILY, { precision: "q4", layout: "genai", widths: WIDTHS, weights });
  log("genai-q4 written");
  weights = undefined; // the 2 GB go before the session below opens
  const q4 = withAccuracyLevel(readFileSync(join(dir, "q4", q4File)), 4);
  mkdirSync(join(dir, "q4-acc4", "onnx"), { recursive: true });
  writeFileSync(join(dir, "q4-acc4", q4File), q4.model);
  copyTokenizer(join(dir, "q4"), join(dir, "q4-acc4"));
  for (const f of ["config.json", "generation_config.json"]) copyFileSync(join(dir, "q4", f), join(dir, "q4-acc4", f));
  log(`q4-acc4 written (accuracy_level 4 on ${q4.nodes} MatMulNBits nodes)`);
  const rng = new Rng(11);
  const ids = Array.from({ length: CHECK_TOKENS }, () => rng.int(3, architectureOf(FAMILY, WIDTHS).vocab - 1));
  const logits = await onnxLogits(join(dir, "fp32", "model.onnx"), ids, threads);
  writeFileSync(join(dir, "check.json"), JSON.stringify({ ids, vocab: architectureOf(FAMILY, WIDTHS).vocab }));
  writeFileSync(join(dir, "check_logits.f32"), new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
  log("fp32 ONNX logits of the check ids written");
}

// Only when it is the script run: bundled into real-shapes.js (scripts/gpu), every module is the bundle's `module`.
if (require.main === module && /realShapeBuild\.[jt]s$/.test(process.argv[1] ?? "")) {
  const [dir, threads = "2"] = process.argv.slice(2);
  if (!dir) {
    console.error("usage: npx tsx scripts/bench/realShapeBuild.ts DIR [THREADS]");
    process.exit(2);
  }
  build(dir, Number(threads)).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
