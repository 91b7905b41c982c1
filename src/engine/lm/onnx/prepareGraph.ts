/**
 * Makes a decoder export "SMC-ready", once, and caches the result in the cache folder (prepareForSmc):
 * - exposes the LM head's input as the output `last_hidden_state` when the export lacks it (twists read it);
 * - adds a sampling head (samplingHead.ts): one token per row drawn where the model runs.
 * The edit works on the protobuf wire format: weights are copied as raw bytes, never decoded.
 *
 * lm/onnx/ is graph surgery, all of it on that wire format: reading and writing it (protoWire.ts,
 * graphRead.ts, graphBuild.ts, graphRewrite.ts), this file's SMC-ready copy and what goes into it (the
 * fusions fuse*.ts, the sampling head samplingHead.ts, packStepInputs.ts), and the small graphs the
 * decoder and the twists run beside it (logitGraphs.ts, twistHeadGraph.ts).
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { cacheDirFromEnv } from "../../environment";
import { writeFileAtomic } from "../../util/atomicWrite";
import { DiskFullError } from "../../util/errors";
import {
  ATTR,
  attribute,
  DTYPE,
  GRAPH,
  MODEL,
  MS_DOMAIN,
  msOpsetImport,
  node,
  NODE,
  TENSOR_TYPE,
  tensorValueInfo,
  TYPE,
  VALUE_INFO,
} from "./graphBuild";
import { GraphInfo, NodeInfo, opsetVersion, readGraph, valueInfoName } from "./graphRead";
import { Heads } from "./graphRewrite";
import { adoptGroupQueryAttention } from "./adoptGroupQueryAttention";
import { AttentionWindows, fuseAttention, SEQLENS_K, TOTAL_SEQUENCE_LENGTH } from "./fuseAttention";
import { fuseProjectionBias } from "./fuseProjectionBias";
import { fuseRmsNorm } from "./fuseRmsNorm";
import { fuseRotary } from "./fuseRotary";
import { fuseSkipLayerNorm } from "./fuseSkipLayerNorm";
import { bytesField, concat, fields, text } from "./protoWire";
import { DrawLayout, SAMPLE_UNIFORM, samplingHead, SAMPLING_MIN_OPSET } from "./samplingHead";
import { packStepInputs } from "./packStepInputs";
import { findHeadInput } from "./headSearch";
import { externalDataHome, withExternalDataLocations } from "./externalData";

export const HIDDEN_OUTPUT = "last_hidden_state";
const PREPARE_VERSION = 19;

/** The element type (onnx TensorProto.DataType) of a tensor ValueInfoProto. */
function elemType(valueInfo: Uint8Array): number {
  for (const f of fields(valueInfo)) {
    if (f.field !== VALUE_INFO.type) continue;
    for (const t of fields(f.value)) {
      if (t.field !== TYPE.tensor) continue;
      for (const e of fields(t.value)) if (e.field === TENSOR_TYPE.elemType) return Number(e.varint);
    }
  }
  throw new Error("logits output has no tensor element type");
}

export interface PreparedModel extends PreparedEdits {
  /** The ONNX file to load: the prepared copy, or the original when it needed nothing. */
  path: string;
  /** Whether the prepared copy was already there. */
  cached: boolean;
  /** Where the copy's external data files are (the source's folder); absent without any. */
  externalDataDir?: string;
}

export interface PreparedEdits {
  addedHidden: boolean;
  addedSampler: boolean;
  /** How many layers' attention became one MultiHeadAttention node each (fuseAttention.ts). */
  fusedAttention: number;
  /** How many of the export's own GroupQueryAttention nodes were taken over a fixed-capacity cache (adoptGroupQueryAttention.ts). */
  adoptedAttention: number;
  /** How many rotary embeddings became one RotaryEmbedding node each (fuseRotary.ts). */
  fusedRotary: number;
  /** The positions their tables cover (0 without any): the graph cannot run past them. */
  rotaryPositions: number;
  /** How many RMS norms became one SimplifiedLayerNormalization node each (fuseRmsNorm.ts). */
  fusedRmsNorm: number;
  /** How many residual sums + layer norms became one Skip(Simplified)LayerNormalization node each (fuseSkipLayerNorm.ts). */
  fusedSkipLayerNorm: number;
  /** How many query/key/value projections' MatMul + bias add became one Gemm each (fuseProjectionBias.ts). */
  fusedProjectionBias: number;
  /**
   * Whether the KV cache is of fixed capacity (fuseAttention.ts): GroupQueryAttention nodes, fed
   * SEQLENS_K and TOTAL_SEQUENCE_LENGTH instead of attention_mask (which the graph no longer has).
   */
  fixedCapacity: boolean;
  /**
   * The inputs packed into one (packStepInputs.ts, STEP_INPUT; graphs with fused layers), in packing
   * order, comma-separated; empty where the graph takes them one by one.
   */
  packedStep: string;
  /** How many 4-bit MatMulNBits nodes were set to compute in int8 (PrepareOptions.int8Compute). */
  int8Compute: number;
}

export interface PrepareOptions {
  hiddenSize: number;
  vocabSize: number;
  /**
   * Add the sampling head. It pays on a GPU, where it saves scanning K × vocab rows in JavaScript,
   * but on the CPU its unfused passes cost about what that scan does, and they run on every pass.
   */
  sampler?: boolean;
  /**
   * The fewest kernels, for a GPU, where a step's time is mostly their launches: fuse the layers
   * (fuseRotary.ts, fuseAttention.ts, fuseRmsNorm.ts, fuseSkipLayerNorm.ts, fuseProjectionBias.ts;
   * given the heads and the model's context) and lay the sampling head out in fewer, larger kernels
   * (samplingHead.ts, DrawLayout).
   */
  /**
   * For the CPU: 4-bit MatMulNBits nodes that name no accuracy level (transformers.js's q4 and q4f16
   * files) compute in int8, accuracy_level 4, as onnxruntime-genai writes them for the CPU. Unset,
   * onnxruntime's CPU kernel dequantizes to fp32 as it goes: a q4 file was slower than fp32 (1.07×)
   * on a Qwen2.5-0.5B shape; at level 4 it took 0.61–0.75× fp32's time, its logits as far from fp32's
   * as before (docs/performance.md, `npm run bench:real`).
   */
  int8Compute?: boolean;
  /**
   * How the sampling head lays out its inverse CDF (samplingHead.ts). Default: "fewest-kernels" with
   * `fuse`, else "least-work"; the CPU takes "least-work" with fused layers too (decoderParts.ts).
   */
  drawLayout?: DrawLayout;
  fuse?: Heads & {
    maxPositions?: number;
    fixedCapacity?: boolean;
    /** The model's sliding window by layer (modelFolder.ts, slidingWindowLayers), for a fixed capacity's attention. */
    windows?: AttentionWindows;
    /** Keep the per-pass inputs apart (packStepInputs.ts). */ unpackedStep?: boolean;
  };
}

const drawLayoutOf = (options: PrepareOptions): DrawLayout => options.drawLayout ?? (options.fuse ? "fewest-kernels" : "least-work");

const NO_EDITS: PreparedEdits = {
  addedHidden: false,
  addedSampler: false,
  fusedAttention: 0,
  adoptedAttention: 0,
  fusedRotary: 0,
  rotaryPositions: 0,
  fusedRmsNorm: 0,
  fusedSkipLayerNorm: 0,
  fusedProjectionBias: 0,
  fixedCapacity: false,
  packedStep: "",
  int8Compute: 0,
};
const FUSED_COUNTS = ["fusedAttention", "fusedRotary", "fusedRmsNorm", "fusedSkipLayerNorm", "fusedProjectionBias"] as const;

/** Whether any layer was fused. */
export const anyFused = (edits: Pick<PreparedEdits, (typeof FUSED_COUNTS)[number]>) => FUSED_COUNTS.some((k) => edits[k] > 0);

/**
 * Rows of the rotary tables: the model's context or more (a run may go past it, as on the CPU, where
 * the angles are computed), at most 32k (16 MB at headDim 128).
 */
const rotaryRows = (maxPositions?: number) => Math.min(Math.max(maxPositions ?? 0, 8192), 32768);

/** The graph with its layers' kernels fused, and how many of each were. */
function fuseLayers(graph: GraphInfo, heads: NonNullable<PrepareOptions["fuse"]>, opset: number, floatLogits: boolean) {
  // Rotary embeddings first: the attention fusion then reads their (batch, sequence, width) output.
  const positions = rotaryRows(heads.maxPositions);
  const rotary = fuseRotary(graph, heads, positions);
  // Attention in float32 graphs, and in half-precision ones only over a fixed-capacity cache:
  // onnxruntime's WebGPU MultiHeadAttention in half precision tripled the error of an fp16 export's
  // logits (0.50 against the fp32 model's, 0.17 unfused; lavapipe) and changed its greedy solutions,
  // while its GroupQueryAttention stays as close to the CPU as the unfused graph (Qwen2.5 and
  // Llama-3.2 fp16 layouts, prefill and 4 steps: at most 0.035 either way; lavapipe).
  const unfused = { graph: rotary.graph, fused: 0, fixedCapacity: false };
  const tried =
    floatLogits || heads.fixedCapacity ? fuseAttention(rotary.graph, heads, opset, heads.fixedCapacity, heads.windows) : unfused;
  const attention = floatLogits || tried.fixedCapacity ? tried : unfused;
  const rms = fuseRmsNorm(attention.graph, opset);
  const skip = fuseSkipLayerNorm(rms.graph);
  const projections = fuseProjectionBias(skip.graph);
  return {
    graph: projections.graph,
    fusedAttention: attention.fused,
    fusedRotary: rotary.fused,
    rotaryPositions: rotary.fused ? positions : 0,
    fusedRmsNorm: rms.fused,
    fusedSkipLayerNorm: skip.fused,
    fusedProjectionBias: projections.fused,
    fixedCapacity: attention.fixedCapacity,
  };
}

/**
 * The graph's fields with its nodes replaced by `nodes` (where the first node was), the inputs named in
 * `dropInputs` left out and `added` after.
 */
function rebuildGraph(
  graph: Uint8Array,
  nodes: Uint8Array[] | undefined,
  added: Uint8Array[],
  dropInputs: readonly string[] = [],
): Uint8Array {
  if (!nodes) return concat([graph, ...added]);
  const out: Uint8Array[] = [];
  let placed = false;
  for (const f of fields(graph)) {
    if (f.field === GRAPH.input && dropInputs.includes(valueInfoName(f.value))) continue;
    if (f.field !== GRAPH.node) out.push(f.raw);
    else if (!placed) {
      out.push(...nodes.map((n) => bytesField(GRAPH.node, n)));
      placed = true;
    }
  }
  return concat([...out, ...added]);
}

/** Applies the edits to an in-memory model; returns undefined when it needs none. */
export function prepareModelBytes(model: Uint8Array, options: PrepareOptions): ({ bytes: Uint8Array } & PreparedEdits) | undefined {
  const graphField = [...fields(model)].find((f) => f.field === MODEL.graph);
  if (!graphField) throw new Error("not an ONNX model: no graph");
  const opset = opsetVersion(model);
  // An export's own GroupQueryAttention is taken as it is over a fixed capacity, on every device: over a
  // growing cache its nodes would write a row's next keys at its count of attended tokens, not after
  // the slot a held row left masked (adoptGroupQueryAttention.ts).
  const adopted = adoptGroupQueryAttention(readGraph(graphField.value));
  const graph = adopted.graph;
  const addedHidden = !graph.outputs.has(HIDDEN_OUTPUT);
  const addedSampler =
    !!options.sampler && graph.outputs.has("logits") && !graph.inputs.includes(SAMPLE_UNIFORM) && opset >= SAMPLING_MIN_OPSET;
  const logits = graph.outputs.has("logits") ? elemType(graph.outputs.get("logits")!) : 0;
  const floats = logits === DTYPE.float || logits === DTYPE.float16;
  const fused = options.fuse && floats ? fuseLayers(graph, options.fuse, opset, logits === DTYPE.float) : undefined;
  const layersFused = fused && anyFused(fused) ? fused : undefined;
  const changed = !!layersFused || adopted.adopted > 0;
  const edited = layersFused?.graph ?? graph;
  const int8 = options.int8Compute ? computeInInt8(edited.nodes) : undefined;
  if (!addedHidden && !addedSampler && !changed && !int8) return undefined;

  const added: Uint8Array[] = [];
  if (addedHidden) {
    const elem = elemType(graph.outputs.get("logits") ?? new Uint8Array());
    // A tensor of that name may exist without being an output; else name the head's input so.
    if (!graph.nodes.some((n) => n.outputs.includes(HIDDEN_OUTPUT))) {
      added.push(bytesField(GRAPH.node, node("Identity", [findHeadInput(graph)], [HIDDEN_OUTPUT], "smc_last_hidden_state")));
    }
    added.push(bytesField(GRAPH.output, tensorValueInfo(HIDDEN_OUTPUT, elem, ["batch_size", "sequence_length", options.hiddenSize])));
  }
  if (addedSampler) added.push(...samplingHead(options.vocabSize, opset, drawLayoutOf(options)));
  const fixedCapacity = adopted.adopted > 0 || !!layersFused?.fixedCapacity;
  let nodes = int8 ? int8.nodes : changed ? edited.nodes.map((n) => n.raw) : undefined;
  const dropInputs = fixedCapacity ? ["attention_mask"] : [];
  let packedStep = "";
  // The length read on the CPU stays an input of its own.
  if (fixedCapacity) added.push(bytesField(GRAPH.input, tensorValueInfo(TOTAL_SEQUENCE_LENGTH, DTYPE.int32, [])));
  // A GPU graph's small per-pass inputs read on the GPU become one (packStepInputs.ts).
  const inputs = [
    ...graph.inputs,
    ...(fixedCapacity ? [SEQLENS_K] : []),
    ...added.filter((f) => fieldOf(f) === GRAPH.input).map(declaredName),
  ];
  // The graph's whole-shape reads of the packed token inputs, made from the packed input's shape instead.
  const shapeReads =
    changed && options.fuse
      ? edited.nodes.filter(
          (n) => n.opType === "Shape" && ["input_ids", "position_ids"].includes(n.inputs[0]) && !n.ints.has("start") && !n.ints.has("end"),
        )
      : [];
  const packed =
    changed && options.fuse && !options.fuse.unpackedStep
      ? packStepInputs(
          inputs,
          opset,
          shapeReads.map((n) => n.outputs[0]),
        )
      : undefined;
  if (packed) {
    nodes = nodes?.filter((n) => !shapeReads.some((r) => r.raw === n));
    packedStep = packed.layout.join(",");
    dropInputs.push(...packed.layout);
    const kept = added.filter((f) => fieldOf(f) !== GRAPH.input || !packed.layout.includes(declaredName(f)));
    added.splice(0, added.length, ...kept, ...packed.nodes, packed.input);
  } else if (fixedCapacity) {
    added.push(bytesField(GRAPH.input, tensorValueInfo(SEQLENS_K, DTYPE.int32, ["batch_size"])));
  }
  const body = rebuildGraph(graphField.value, nodes, added, dropInputs);
  const out = [...fields(model)].map((f) => (f.field === MODEL.graph ? bytesField(MODEL.graph, body) : f.raw));
  if (changed && !opsetVersion(model, MS_DOMAIN)) out.push(bytesField(MODEL.opsetImport, msOpsetImport()));
  const counts = layersFused ?? NO_EDITS;
  const { fusedAttention, fusedRotary, rotaryPositions, fusedRmsNorm, fusedSkipLayerNorm, fusedProjectionBias } = counts;
  const adoptedAttention = adopted.adopted;
  return {
    bytes: concat(out),
    addedHidden,
    addedSampler,
    fusedAttention,
    adoptedAttention,
    fusedRotary,
    rotaryPositions,
    fusedRmsNorm,
    fusedSkipLayerNorm,
    fusedProjectionBias,
    fixedCapacity,
    packedStep,
    int8Compute: int8?.count ?? 0,
  };
}

/** MatMulNBits's accuracy levels: 0 is unset (compute in the activations' type), 4 computes in int8. */
const ACCURACY_INT8 = 4;

/**
 * The nodes with every MatMulNBits that names no accuracy level (or 0) set to ACCURACY_INT8, and how
 * many; undefined where there is none.
 */
function computeInInt8(graphNodes: readonly NodeInfo[]): { nodes: Uint8Array[]; count: number } | undefined {
  let count = 0;
  const nodes = graphNodes.map((n) => {
    if (n.opType !== "MatMulNBits" || (n.ints.get("accuracy_level")?.[0] ?? 0) !== 0) return n.raw;
    count++;
    const kept = [...fields(n.raw)].filter((f) => f.field !== NODE.attribute || !isAttribute(f.value, "accuracy_level")).map((f) => f.raw);
    return concat([...kept, bytesField(NODE.attribute, attribute("accuracy_level", ACCURACY_INT8))]);
  });
  return count ? { nodes, count } : undefined;
}

const isAttribute = (attr: Uint8Array, name: string) => [...fields(attr)].some((f) => f.field === ATTR.name && text(f) === name);

/** The field number of one encoded graph field (node, input, output …). */
const fieldOf = (f: Uint8Array) => [...fields(f)][0].field;
/** The name an encoded graph input declares. */
const declaredName = (f: Uint8Array) => valueInfoName([...fields(f)][0].value);

/**
 * A fingerprint of a file's contents without reading all of it: sha256 over its first and last MiB
 * (the whole file when it is at most 2 MiB), with its size. A graph whose weights sit in an external
 * data file is small and hashed whole; a 2 GB single-file export costs two 1 MiB reads, not 2 GB.
 */
export function sampleHash(path: string, size = statSync(path).size): string {
  const hash = createHash("sha256").update(String(size));
  const fd = openSync(path, "r");
  try {
    const MiB = 1 << 20;
    const read = (at: number, length: number) => {
      const buf = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const n = readSync(fd, buf, got, length - got, at + got);
        if (n <= 0) break;
        got += n;
      }
      hash.update(buf.subarray(0, got));
    };
    if (size <= 2 * MiB) read(0, size);
    else {
      read(0, MiB);
      read(size - MiB, MiB);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

/**
 * The cache folder of one source file's prepared graphs: CACHE/prepared/FOLDER-HASH, HASH a sha256 of
 * its absolute path (the stamps inside key on its size, mtime and sampleHash too).
 */
export function preparedDir(onnxPath: string, cacheDir: string = cacheDirFromEnv()): string {
  const abs = resolve(onnxPath);
  const id = createHash("sha256").update(abs).digest("hex").slice(0, 16);
  // The model folder's name, for people looking in the cache (transformers.js puts the file in onnx/).
  const parent = dirname(abs);
  const label = basename(basename(parent) === "onnx" ? dirname(parent) : parent) || "model";
  return join(cacheDir, "prepared", `${label.replace(/[^A-Za-z0-9._-]/g, "_")}-${id}`);
}

/**
 * Prepares `onnxPath` for SMC and returns the file to load. The copy goes to the cache folder
 * (preparedDir; TWISTED_SMC_CACHE_DIR, environment.ts), never the model's folder, as
 * NAME[.sampling][.fused[.capacity][.unpacked]].smc.onnx after the edits asked for, with a .smc.json
 * stamp of its source (absolute path, size, mtime, sampleHash): a changed source is prepared again. A
 * copy of a graph with external data keeps relative `location`s: onnxruntime refuses absolute ones and
 * links out of the model's folder (1.30), so the session is told the data's folder instead
 * (externalDataHome; PreparedModel.externalDataDir, decoderSession.ts). A graph that needs no edits is loaded where it is.
 */
export function prepareForSmc(onnxPath: string, options: PrepareOptions, cacheDir: string = cacheDirFromEnv()): PreparedModel {
  const abs = resolve(onnxPath);
  const dir = preparedDir(abs, cacheDir);
  const base =
    basename(abs, ".onnx") +
    (options.sampler ? ".sampling" : "") +
    (options.fuse ? ".fused" : "") +
    (options.fuse?.fixedCapacity ? ".capacity" : "") +
    (options.fuse?.unpackedStep ? ".unpacked" : "");
  const target = join(dir, `${base}.smc.onnx`);
  const stampPath = join(dir, `${base}.smc.json`);
  const st = statSync(abs);
  const source = {
    version: PREPARE_VERSION,
    path: abs,
    size: st.size,
    mtimeMs: Math.round(st.mtimeMs),
    sampleHash: sampleHash(abs, st.size),
    // The CPU's copy and a GPU's of the same name differ in these edits: one is not taken for the other.
    int8Compute: !!options.int8Compute,
    drawLayout: drawLayoutOf(options),
  };
  if (existsSync(target) && existsSync(stampPath)) {
    try {
      const saved = JSON.parse(readFileSync(stampPath, "utf8"));
      // The copy's size guards against a copy cut short (a full disk once left such copies behind).
      if (JSON.stringify(saved.source) === JSON.stringify(source) && saved.bytes === statSync(target).size) {
        const edits: PreparedEdits = { ...NO_EDITS };
        for (const k of Object.keys(NO_EDITS) as (keyof PreparedEdits)[])
          if (typeof saved[k] === typeof NO_EDITS[k]) Object.assign(edits, { [k]: saved[k] });
        const external = typeof saved.externalDataDir === "string" ? { externalDataDir: saved.externalDataDir as string } : {};
        return { path: target, ...edits, cached: true, ...external };
      }
    } catch {
      // A damaged stamp: prepare again.
    }
  }
  const original = readFileSync(abs);
  const prepared = prepareModelBytes(original, options);
  if (!prepared) return { path: abs, ...NO_EDITS, cached: false };
  const { bytes: edited, ...edits } = prepared;
  const home = externalDataHome(original, dirname(abs));
  const bytes = home?.rename ? withExternalDataLocations(edited, home.rename) : edited;
  const external = home ? { externalDataDir: home.dir } : {};
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw DiskFullError.from(e, dir);
  }
  writeFileAtomic(target, bytes);
  writeFileAtomic(stampPath, JSON.stringify({ source, bytes: bytes.length, ...external, ...edits }) + "\n");
  return { path: target, ...edits, cached: false, ...external };
}
