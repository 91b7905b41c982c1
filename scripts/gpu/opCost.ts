/**
 * `node op-cost.js [--k 16] [--layers 12] [--heads 12] [--head-dim 64] [--cache 256] [--capacity 320]
 * [--steps 30] [--cases attention-growing,...] [--storage-cache bucket|simple|lazyRelease|disabled]
 * [--profile PREFIX] [--mem-pattern yes|no]`:
 * what onnxruntime-node's WebGPU provider costs per step for the parts of a decode step that touch
 * the KV cache, without the rest of a model. Each case is a graph of `--layers` attention nodes (or
 * 2 × layers elementwise nodes over tensors the cache's size) run step after step, its outputs fed back
 * as the next step's inputs as the engine feeds the cache:
 * - attention-growing: MultiHeadAttention with the cache one token longer each step (the fused graph);
 * - attention-same-cache: the same, fed the same cache every step (nothing written is read again);
 * - attention-capacity: GroupQueryAttention over a fixed-capacity cache with per-row lengths;
 * - neg-fed-back / neg-same-input: one Neg per cache tensor, constant size, fed back or not;
 * - concat-growing: the exported graph's cache update alone, each cache tensor one token longer by a
 *   Concat (no attention).
 * Prints one JSON line per case: the median step (the time `run` takes; outputs stay on the GPU) and the
 * mean with the queue drained at the end. With `--cache 16` it shows the cost of a node with hardly any
 * data: the per-node floor. `--profile PREFIX` writes onnxruntime's trace of each case
 * (`PREFIX-<case>_<date>.json`, for profile-summary.mjs: GPU time per kernel against CPU time per node).
 * `--mem-pattern no` turns off onnxruntime's memory patterns, which it plans anew for every new set of
 * input shapes (the growing cache's every step). `--storage-cache` sets onnxruntime's WebGPU buffer
 * cache for the whole process (see `webgpu` below); scripts/gpu/count-buffers.sh counts the buffers
 * each case makes per step in each mode.
 * Bundled by scripts/gpu/prepare.sh; scripts/gpu/run.sh runs it on the card.
 */
import * as ort from "onnxruntime-node";
import { parseArgs } from "node:util";
import { GRAPH, modelBytes, MODEL, msOpsetImport, MS_DOMAIN, node, tensor, tensorValueInfo } from "../../src/engine/lm/onnx/graphBuild";
import { bytesField, concat } from "../../src/engine/lm/onnx/protoWire";
import { median } from "../../src/bench/median";

export const CASES = [
  "attention-growing",
  "attention-same-cache",
  "attention-capacity",
  "neg-fed-back",
  "neg-same-input",
  "concat-growing",
] as const;
export type Case = (typeof CASES)[number];
const FLOAT = 1,
  INT32 = 6;

export interface Shape {
  k: number;
  layers: number;
  heads: number;
  headDim: number;
  cache: number;
  capacity: number;
}

const cacheNames = (l: number) => ({ past: [`past.${l}.key`, `past.${l}.value`], present: [`present.${l}.key`, `present.${l}.value`] });

/** The case's graph (inputs q, k, v, GroupQueryAttention's lengths, the cache in, the cache out) and how many nodes it runs. */
function graph(kind: Case, s: Shape): { bytes: Uint8Array; nodes: number } {
  const width = s.heads * s.headDim;
  const nodes: Uint8Array[] = [];
  const io: Uint8Array[] = ["q", "k", "v"].map((n) => bytesField(GRAPH.input, tensorValueInfo(n, FLOAT, ["B", 1, width])));
  const attention = kind.startsWith("attention");
  if (kind === "attention-capacity")
    io.push(
      bytesField(GRAPH.input, tensorValueInfo("seqlens_k", INT32, ["B"])),
      bytesField(GRAPH.input, tensorValueInfo("total_len", INT32, [])),
    );
  if (kind === "concat-growing") {
    // The new token's keys and values as (batch, heads, 1, headDim), as an export makes them.
    nodes.push(node("Constant", [], ["bsnh"], "bsnh", { value: { tensor: tensor("int64", [4], [0, 1, s.heads, s.headDim]) } }));
    for (const n of ["k", "v"]) {
      nodes.push(node("Reshape", [n, "bsnh"], [`${n}_bsnh`], `${n}_bsnh`));
      nodes.push(node("Transpose", [`${n}_bsnh`], [`${n}_bnsh`], `${n}_bnsh`, { perm: { ints: [0, 2, 1, 3] } }));
    }
  }
  for (let l = 0; l < s.layers; l++) {
    const { past, present } = cacheNames(l);
    for (const p of past) io.push(bytesField(GRAPH.input, tensorValueInfo(p, FLOAT, ["B", s.heads, "S", s.headDim])));
    for (const p of present) io.push(bytesField(GRAPH.output, tensorValueInfo(p, FLOAT, ["B", s.heads, "T", s.headDim])));
    if (kind === "concat-growing") {
      past.forEach((p, i) => nodes.push(node("Concat", [p, i ? "v_bnsh" : "k_bnsh"], [present[i]], `concat${l}.${i}`, { axis: 2 })));
      continue;
    }
    if (!attention) {
      past.forEach((p, i) => nodes.push(node("Neg", [p], [present[i]], `neg${l}.${i}`)));
      continue;
    }
    io.push(bytesField(GRAPH.output, tensorValueInfo(`out${l}`, FLOAT, ["B", 1, width])));
    nodes.push(
      kind === "attention-capacity"
        ? node(
            "GroupQueryAttention",
            ["q", "k", "v", ...past, "seqlens_k", "total_len"],
            [`out${l}`, ...present],
            `gqa${l}`,
            { num_heads: s.heads, kv_num_heads: s.heads },
            MS_DOMAIN,
          )
        : node(
            "MultiHeadAttention",
            ["q", "k", "v", "", "", "", ...past],
            [`out${l}`, ...present],
            `mha${l}`,
            { num_heads: s.heads },
            MS_DOMAIN,
          ),
    );
  }
  const graphBody = [...nodes.map((n) => bytesField(GRAPH.node, n)), ...io];
  return { bytes: concat([modelBytes(kind, graphBody, 17), bytesField(MODEL.opsetImport, msOpsetImport())]), nodes: nodes.length };
}

/**
 * The WebGPU provider with a storage-buffer cache mode. onnxruntime makes one WebGPU context per
 * process and sets its buffer cache from the first session's options (later sessions' are ignored),
 * so every session of a run gets the same mode, the first one created included.
 */
const webgpu = (storageCache?: string) =>
  ({ name: "webgpu", ...(storageCache ? { storageBufferCacheMode: storageCache } : {}) }) as ort.InferenceSession.ExecutionProviderConfig;

interface Options {
  storageCache?: string;
  profile?: string;
  memPattern?: boolean;
  report?: (line: string) => void;
}

async function measure(kind: Case, s: Shape, steps: number, drain: ort.InferenceSession, { storageCache, profile, memPattern }: Options) {
  const attention = kind.startsWith("attention");
  const outputs = Array.from({ length: s.layers }, (_, l) => [...cacheNames(l).present, ...(attention ? [`out${l}`] : [])]).flat();
  const { bytes, nodes } = graph(kind, s);
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: [webgpu(storageCache)],
    preferredOutputLocation: Object.fromEntries(outputs.map((o) => [o, "gpu-buffer" as const])),
    ...(profile ? { enableProfiling: true, profileFilePrefix: `${profile}-${kind}` } : {}),
    ...(memPattern === undefined ? {} : { enableMemPattern: memPattern }),
  });
  const length = kind === "attention-capacity" ? s.capacity : s.cache;
  let cache: ort.Tensor[] = Array.from(
    { length: 2 * s.layers },
    () => new ort.Tensor("float32", new Float32Array(s.k * s.heads * length * s.headDim), [s.k, s.heads, length, s.headDim]),
  );
  const times: number[] = [];
  const fedBack = kind !== "attention-same-cache" && kind !== "neg-same-input";
  try {
    for (let t = 0; t < steps; t++) {
      const feeds: Record<string, ort.Tensor> = {};
      for (const n of ["q", "k", "v"])
        feeds[n] = new ort.Tensor("float32", new Float32Array(s.k * s.heads * s.headDim).fill(0.01 * (t + 1)), [
          s.k,
          1,
          s.heads * s.headDim,
        ]);
      if (kind === "attention-capacity") {
        // Every row `cache + t` tokens long; the new one written at that slot of the fixed-size cache.
        feeds.seqlens_k = new ort.Tensor("int32", new Int32Array(s.k).fill(s.cache + t), [s.k]);
        feeds.total_len = new ort.Tensor("int32", Int32Array.of(s.cache + t + 1), []);
      }
      cache.forEach((c, i) => (feeds[cacheNames(i >> 1).past[i & 1]] = c));
      const t0 = performance.now();
      const out = await session.run(feeds);
      times.push(performance.now() - t0);
      for (let l = 0; l < s.layers && attention; l++) out[`out${l}`].dispose();
      const next = Array.from({ length: s.layers }, (_, l) => cacheNames(l).present.map((n) => out[n])).flat();
      // The first step's cache (CPU arrays) is replaced by GPU tensors either way; later ones only when fed back.
      if (fedBack || t === 0) {
        for (const c of cache) c.dispose();
        cache = next;
      } else {
        for (const c of next) c.dispose();
      }
    }
    // Reading one number back waits for the queue: the mean then counts work still on the GPU.
    const t0 = performance.now();
    await drain.run({ x: cache[0] });
    const drained = performance.now() - t0;
    const later = times.slice(Math.min(5, steps - 1));
    return {
      case: kind,
      ...s,
      capacity: kind === "attention-capacity" ? s.capacity : undefined,
      steps,
      storageCache,
      memPattern,
      nodesPerStep: nodes,
      msPerStepMedian: Number(median(later).toFixed(2)),
      msPerStepWithDrain: Number(((later.reduce((a, b) => a + b, 0) + drained) / later.length).toFixed(2)),
    };
  } finally {
    for (const c of cache) c.dispose();
    if (profile) session.endProfiling();
    await session.release();
  }
}

/** Every case at one shape, one result each (see the file's comment). */
export async function measureOpCosts(s: Shape, steps: number, cases: readonly Case[] = CASES, options: Options = {}) {
  if (Object.values(s).some((v) => !Number.isInteger(v) || v < 1) || s.capacity < s.cache + steps) {
    throw new Error(
      `every size must be a positive integer and --capacity at least --cache + --steps (${s.cache + steps}): ${JSON.stringify(s)}`,
    );
  }
  const unknown = cases.filter((c) => !CASES.includes(c));
  if (unknown.length) throw new Error(`unknown case ${unknown.join(", ")}; the cases are ${CASES.join(", ")}`);
  // A one-number reduction of a cache tensor, on the GPU, returned to the CPU.
  const drainGraph = modelBytes(
    "drain",
    [
      bytesField(GRAPH.node, node("ReduceSum", ["x"], ["y"], "sum", { keepdims: 0 })),
      bytesField(GRAPH.input, tensorValueInfo("x", FLOAT, ["B", s.heads, "T", s.headDim])),
      bytesField(GRAPH.output, tensorValueInfo("y", FLOAT, [])),
    ],
    17,
  );
  const drain = await ort.InferenceSession.create(drainGraph, { executionProviders: [webgpu(options.storageCache)] });
  try {
    await drain.run({ x: new ort.Tensor("float32", new Float32Array(s.heads * s.headDim), [1, s.heads, 1, s.headDim]) });
    const results = [];
    for (const kind of cases) {
      results.push(await measure(kind, s, steps, drain, options));
      options.report?.(JSON.stringify(results[results.length - 1]));
    }
    return results;
  } finally {
    await drain.release();
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      k: { type: "string" },
      layers: { type: "string" },
      heads: { type: "string" },
      "head-dim": { type: "string" },
      cache: { type: "string" },
      capacity: { type: "string" },
      steps: { type: "string" },
      cases: { type: "string" },
      "storage-cache": { type: "string" },
      profile: { type: "string" },
      "mem-pattern": { type: "string" },
    },
  });
  const int = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
  const steps = int(values.steps, 30);
  const cache = int(values.cache, 256);
  const shape: Shape = {
    k: int(values.k, 16),
    layers: int(values.layers, 12),
    heads: int(values.heads, 12),
    headDim: int(values["head-dim"], 64),
    cache,
    capacity: int(values.capacity, cache + steps),
  };
  await measureOpCosts(shape, steps, (values.cases ?? CASES.join(",")).split(",") as Case[], {
    storageCache: values["storage-cache"],
    profile: values.profile,
    memPattern: values["mem-pattern"] === undefined ? undefined : values["mem-pattern"] === "yes",
    report: console.log,
  });
}

// Run as a script, not imported: in a bundle (the kit's test suite) every module's `module` is the bundle's.
if (require.main === module && /op-?[cC]ost\.[jt]s$/.test(process.argv[1] ?? "")) {
  main().catch((e) => {
    console.error(`op-cost: ${(e as Error).message}`);
    process.exit(1);
  });
}
