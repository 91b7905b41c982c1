/**
 * Makes a decoder export "SMC-ready", once, and caches the result next to the original:
 * - exposes the LM head's input as the output `last_hidden_state` when the export lacks it (twists read it);
 * - adds a sampling head (samplingHead.ts): one token per row drawn where the model runs.
 * The edit works on the protobuf wire format: weights are copied as raw bytes, never decoded.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "../../util/atomicWrite";
import { GRAPH, MODEL, node, NODE, OPSET, TENSOR_TYPE, tensorValueInfo, TYPE, VALUE_INFO } from "./graphBuild";
import { bytesField, concat, fields, text } from "./protoWire";
import { SAMPLE_UNIFORM, samplingHead, SAMPLING_MIN_OPSET } from "./samplingHead";

export const HIDDEN_OUTPUT = "last_hidden_state";
const PREPARE_VERSION = 7;

interface NodeInfo {
  opType: string;
  inputs: string[];
  outputs: string[];
}

interface GraphInfo {
  inputs: string[];
  outputs: Map<string, Uint8Array>;
  nodes: NodeInfo[];
}

function readNode(bytes: Uint8Array): NodeInfo {
  const node: NodeInfo = { opType: "", inputs: [], outputs: [] };
  for (const f of fields(bytes)) {
    if (f.field === NODE.input) node.inputs.push(text(f));
    else if (f.field === NODE.output) node.outputs.push(text(f));
    else if (f.field === NODE.opType) node.opType = text(f);
  }
  return node;
}

function valueInfoName(bytes: Uint8Array): string {
  for (const f of fields(bytes)) if (f.field === VALUE_INFO.name) return text(f);
  return "";
}

function readGraph(graph: Uint8Array): GraphInfo {
  const info: GraphInfo = { inputs: [], outputs: new Map(), nodes: [] };
  for (const f of fields(graph)) {
    if (f.field === GRAPH.node) info.nodes.push(readNode(f.value));
    else if (f.field === GRAPH.input) info.inputs.push(valueInfoName(f.value));
    else if (f.field === GRAPH.output) info.outputs.set(valueInfoName(f.value), f.value);
  }
  return info;
}

/** The default-domain opset the model imports (0 when it names none). */
function opsetVersion(model: Uint8Array): number {
  for (const f of fields(model)) {
    if (f.field !== MODEL.opsetImport) continue;
    let domain = "";
    let version = 0;
    for (const o of fields(f.value)) {
      if (o.field === OPSET.domain) domain = text(o);
      else if (o.field === OPSET.version) version = Number(o.varint);
    }
    if (domain === "" || domain === "ai.onnx") return version;
  }
  return 0;
}

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

/** The input of the LM head: walk back from `logits` through elementwise ops to the MatMul/Gemm. */
export function findHeadInput(graph: GraphInfo): string {
  const producer = new Map<string, NodeInfo>();
  for (const n of graph.nodes) for (const o of n.outputs) producer.set(o, n);
  const passThrough = new Set(["Add", "Mul", "Div", "Tanh", "Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze"]);
  let name = "logits";
  for (let hops = 0; hops < 16; hops++) {
    const n = producer.get(name);
    if (!n) break;
    if (n.opType === "MatMul" || n.opType === "Gemm") return n.inputs[0];
    if (!passThrough.has(n.opType)) break;
    // Follow the input that is itself computed (not a constant weight or scale).
    const next = n.inputs.find((i) => producer.has(i) && producer.get(i)!.opType !== "Constant");
    if (!next) break;
    name = next;
  }
  throw new Error(`cannot find the LM head (a MatMul or Gemm feeding "logits") to expose ${HIDDEN_OUTPUT}`);
}

export interface PreparedModel {
  /** The ONNX file to load: the prepared copy, or the original when it needed nothing. */
  path: string;
  addedHidden: boolean;
  addedSampler: boolean;
  /** Whether the prepared copy was already there. */
  cached: boolean;
}

type Edits = { addedHidden: boolean; addedSampler: boolean };

/**
 * Applies the edits to an in-memory model; returns undefined when it needs none. The sampling head is
 * added only when asked for: it pays on a GPU, where it saves scanning K × vocab rows in JavaScript,
 * but on the CPU its unfused passes cost about what that scan does, and they run on every forward pass.
 */
export function prepareModelBytes(model: Uint8Array, hiddenSize: number, vocabSize: number, sampler = false): ({ bytes: Uint8Array } & Edits) | undefined {
  const graphField = [...fields(model)].find((f) => f.field === MODEL.graph);
  if (!graphField) throw new Error("not an ONNX model: no graph");
  const graph = readGraph(graphField.value);
  const addedHidden = !graph.outputs.has(HIDDEN_OUTPUT);
  const addedSampler = sampler && graph.outputs.has("logits") && !graph.inputs.includes(SAMPLE_UNIFORM) && opsetVersion(model) >= SAMPLING_MIN_OPSET;
  if (!addedHidden && !addedSampler) return undefined;

  const added: Uint8Array[] = [];
  if (addedHidden) {
    const elem = elemType(graph.outputs.get("logits") ?? new Uint8Array());
    // A tensor of that name may exist without being an output; else name the head's input so.
    if (!graph.nodes.some((n) => n.outputs.includes(HIDDEN_OUTPUT))) {
      added.push(bytesField(GRAPH.node, node("Identity", [findHeadInput(graph)], [HIDDEN_OUTPUT], "smc_last_hidden_state")));
    }
    added.push(bytesField(GRAPH.output, tensorValueInfo(HIDDEN_OUTPUT, elem, ["batch_size", "sequence_length", hiddenSize])));
  }
  if (addedSampler) added.push(...samplingHead(vocabSize, opsetVersion(model)));
  const body = concat([graphField.value, ...added]);
  const out = [...fields(model)].map((f) => (f.field === MODEL.graph ? bytesField(MODEL.graph, body) : f.raw));
  return { bytes: concat(out), addedHidden, addedSampler };
}

/**
 * Prepares `onnxPath` for SMC and returns the file to load. The copy sits next to the original (so
 * external weight files still resolve) as NAME.smc.onnx (NAME.sampling.smc.onnx with the sampling
 * head) with a .smc.json stamp of its source.
 */
export function prepareForSmc(onnxPath: string, hiddenSize: number, vocabSize: number, sampler = false): PreparedModel {
  const dir = dirname(onnxPath);
  const base = basename(onnxPath, ".onnx") + (sampler ? ".sampling" : "");
  const target = join(dir, `${base}.smc.onnx`);
  const stampPath = join(dir, `${base}.smc.json`);
  const st = statSync(onnxPath);
  const source = { version: PREPARE_VERSION, source: basename(onnxPath), size: st.size, mtimeMs: Math.round(st.mtimeMs) };
  if (existsSync(target) && existsSync(stampPath)) {
    try {
      const saved = JSON.parse(readFileSync(stampPath, "utf8"));
      if (JSON.stringify(saved.source) === JSON.stringify(source)) {
        return { path: target, addedHidden: saved.addedHidden, addedSampler: saved.addedSampler, cached: true };
      }
    } catch {
      // A damaged stamp: prepare again.
    }
  }
  const prepared = prepareModelBytes(readFileSync(onnxPath), hiddenSize, vocabSize, sampler);
  if (!prepared) return { path: onnxPath, addedHidden: false, addedSampler: false, cached: false };
  const { bytes, ...edits } = prepared;
  writeFileAtomic(target, bytes);
  writeFileAtomic(stampPath, JSON.stringify({ source, ...edits }) + "\n");
  return { path: target, ...edits, cached: false };
}
