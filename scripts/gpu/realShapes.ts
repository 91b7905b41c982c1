/**
 * The models of issue #19's GPU benchmark (scripts/gpu/real.sh), built on the GPU machine itself: it has
 * no network, and a run may carry 64 MiB, not a 0.5B or 1.5B model. Random-weight decoders of real
 * shapes as Optimum / transformers.js export them (scripts/fixtures/realLayouts.ts, Qwen2.5's layout:
 * grouped-query attention, q/k/v biases, tied embeddings), the same weights in each precision:
 *
 *   node real-shapes.js DIR SHAPE PART [THREADS]
 *
 * SHAPE: qwen2.5-0.5b (24 layers, 896 wide, 14 heads, 2 KV heads), qwen2.5-math-1.5b (28 layers, 1536
 * wide, 12 heads, 2 KV heads, head_dim 128, MLP 8960), or small (a dry run on any machine).
 * PART: fp16, q4f16 or genai-q4f16 (onnxruntime-genai's builder's layout: its own GroupQueryAttention,
 * MatMulNBits over fp16) (DIR/SHAPE/PART: a model folder, and step-bytes.json: what one decode step must
 * read, for the memory-bandwidth floor), or torch (DIR/SHAPE/weights.safetensors for PyTorch, and
 * check.json + check_logits.f32: the fp16 graph's logits over random ids on the CPU, which PyTorch's
 * fp16 forward must reproduce; DIR/SHAPE/fp16 first). The parts of a shape run as processes side by
 * side; each makes the weights from the same seed.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GRAPH, MODEL } from "../../src/engine/lm/onnx/graphBuild";
import { readGraph } from "../../src/engine/lm/onnx/graphRead";
import { GraphIndex } from "../../src/engine/lm/onnx/graphRewrite";
import { fields } from "../../src/engine/lm/onnx/protoWire";
import { Rng } from "../../src/engine/util/rng";
import { architectureOf, QWEN25_05B, randomWeights, SMALL, Widths, writeModelFolder } from "../fixtures/realLayouts";
import { FAMILY, namedTensors, onnxLogits, writeSafetensors } from "../bench/realShapeBuild";

export const SHAPES: Record<string, Widths> = {
  "qwen2.5-0.5b": QWEN25_05B,
  "qwen2.5-math-1.5b": { layers: 28, hidden: 1536, heads: 12, kvHeads: 2, headDim: 128, intermediate: 8960 },
  small: SMALL,
};
const CHECK_TOKENS = 16;

// TensorProto fields, and the bits of each data type a step reads.
const TENSOR = { dims: 1, dataType: 2, name: 8 };
const BITS: Record<number, number> = { 1: 32, 2: 8, 3: 8, 6: 32, 7: 64, 10: 16, 16: 16, 21: 4, 22: 4 };

/**
 * What one decode step reads of a graph's weights: every initializer's bytes, less those only a Gather
 * reads (the embedding table, of which a step reads K rows). Counted from the graph's own TensorProtos.
 */
export function weightBytesPerStep(modelPath: string): { weightBytes: number; gatheredBytes: number } {
  const model = readFileSync(modelPath);
  const graphBytes = [...fields(model)].find((f) => f.field === MODEL.graph)!.value;
  const index = new GraphIndex(readGraph(graphBytes));
  let weightBytes = 0;
  let gatheredBytes = 0;
  for (const f of fields(graphBytes)) {
    if (f.field !== GRAPH.initializer) continue;
    let count = 1;
    let type = 0;
    let name = "";
    for (const t of fields(f.value)) {
      if (t.field === TENSOR.dims) count *= Number(t.varint ?? 1);
      else if (t.field === TENSOR.dataType) type = Number(t.varint);
      else if (t.field === TENSOR.name) name = new TextDecoder().decode(t.value);
    }
    const bytes = (count * (BITS[type] ?? 32)) / 8;
    const readers = index.readers(name);
    if (readers.length > 0 && readers.every((n) => n.opType === "Gather" || n.opType === "GatherBlockQuantized")) gatheredBytes += bytes;
    else weightBytes += bytes;
  }
  return { weightBytes, gatheredBytes };
}

async function main(): Promise<void> {
  const [dir, shape, part, threads = "16"] = process.argv.slice(2);
  const widths = SHAPES[shape];
  if (!dir || !widths || !["fp16", "q4f16", "genai-q4f16", "torch"].includes(part)) {
    console.error(`usage: node real-shapes.js DIR ${Object.keys(SHAPES).join("|")} fp16|q4f16|genai-q4f16|torch [THREADS]`);
    process.exit(2);
  }
  const t0 = performance.now();
  const log = (what: string) => console.error(`[${shape} ${part} ${((performance.now() - t0) / 1000).toFixed(0)} s] ${what}`);
  const weights = randomWeights(FAMILY, widths);
  log("weights made");
  const home = join(dir, shape);
  mkdirSync(home, { recursive: true });
  if (part === "torch") {
    writeSafetensors(join(home, "weights.safetensors"), namedTensors(weights, widths));
    log("weights.safetensors written");
    const rng = new Rng(11);
    const vocab = architectureOf(FAMILY, widths).vocab;
    const ids = Array.from({ length: CHECK_TOKENS }, () => rng.int(3, vocab - 1));
    const logits = await onnxLogits(join(home, "fp16", "model.onnx"), ids, Number(threads), widths);
    writeFileSync(join(home, "check.json"), JSON.stringify({ ids, vocab, of: "fp16" }));
    writeFileSync(join(home, "check_logits.f32"), new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
    log("the fp16 graph's logits of the check ids written");
    return;
  }
  const folder = join(home, part);
  // A 1.5B model in fp16 (3 GB) does not fit one protobuf: its weights go to model.onnx_data, as Optimum writes them.
  const genai = part.startsWith("genai-");
  const precision = part.replace(/^genai-/, "") as "fp16" | "q4f16";
  const file = writeModelFolder(folder, FAMILY, {
    precision,
    widths,
    weights,
    externalData: part === "fp16",
    layout: genai ? "genai" : "optimum",
  });
  const arch = architectureOf(FAMILY, widths);
  const bytes = {
    ...weightBytesPerStep(join(folder, file)),
    // The KV cache is kept in the activations' precision (fp16 in both): keys and values, every layer.
    kvBytesPerToken: arch.layers * 2 * arch.kvHeads * arch.headDim * 2,
  };
  writeFileSync(join(folder, "step-bytes.json"), JSON.stringify(bytes));
  log(`written (${(bytes.weightBytes / 2 ** 20).toFixed(0)} MiB read per step)`);
}

if (require.main === module && /real-?[sS]hapes\.[jt]s$/.test(process.argv[1] ?? ""))
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
