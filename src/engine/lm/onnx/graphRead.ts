/**
 * Reads the parts of an ONNX graph that graph edits look at: its nodes (with their attributes and
 * their bytes, to copy unchanged), inputs, outputs, and the values of small constants. Weights are
 * never decoded.
 */
import { ATTR, GRAPH, MODEL, NODE, OPSET, VALUE_INFO } from "./graphBuild";
import { Field, fields, text } from "./protoWire";
import { halfToFloat } from "../decoder/tensorData";

export interface NodeInfo {
  opType: string;
  name: string;
  inputs: string[];
  outputs: string[];
  /** Integer and integer-list attributes (the ones edits match on), by name. */
  ints: Map<string, number[]>;
  /** Float attributes, by name. */
  floats: Map<string, number>;
  /** The node's encoded bytes. */
  raw: Uint8Array;
}

export interface GraphInfo {
  inputs: string[];
  /** Graph outputs by name, with their encoded ValueInfoProto. */
  outputs: Map<string, Uint8Array>;
  nodes: NodeInfo[];
  /** Graph inputs by name, with their encoded ValueInfoProto. */
  inputInfo: Map<string, Uint8Array>;
  /** The initializers (weights): their dimensions by name. */
  initializers: Map<string, number[]>;
  /** Values of small constants (at most SMALL_CONSTANT entries), from Constant nodes and initializers. */
  constants: Map<string, number[]>;
}

// Enough for a rotary embedding's inverse frequencies (headDim / 2); weights are larger.
const SMALL_CONSTANT = 256;
// TensorProto fields and data types.
const TENSOR = { dims: 1, dataType: 2, floatData: 4, int32Data: 5, int64Data: 7, name: 8, rawData: 9, doubleData: 10 };
const DATA = { float: 1, int32: 6, int64: 7, float16: 10, double: 11 };

function varints(f: Field): number[] {
  if (f.varint !== undefined) return [Number(BigInt.asIntN(64, f.varint))];
  // A packed repeated field: varints back to back.
  const out: number[] = [];
  let value = 0n;
  let shift = 0n;
  for (const b of f.value) {
    value |= BigInt(b & 0x7f) << shift;
    shift += 7n;
    if (!(b & 0x80)) {
      out.push(Number(BigInt.asIntN(64, value)));
      value = 0n;
      shift = 0n;
    }
  }
  return out;
}

/** The values of a TensorProto with at most SMALL_CONSTANT entries, or undefined (large, or a type not read). */
export function smallTensorValues(tensor: Uint8Array): { name: string; values: number[] } | undefined {
  let name = "";
  let type = 0;
  let count = 1;
  let raw: Uint8Array | undefined;
  const listed: number[] = [];
  for (const f of fields(tensor)) {
    if (f.field === TENSOR.dims) count *= varints(f)[0];
    else if (f.field === TENSOR.dataType) type = Number(f.varint);
    else if (f.field === TENSOR.name) name = text(f);
    else if (f.field === TENSOR.rawData) raw = f.value;
    else if (f.field === TENSOR.int64Data || f.field === TENSOR.int32Data) listed.push(...varints(f));
    else if (f.field === TENSOR.floatData || f.field === TENSOR.doubleData) {
      const view = new DataView(f.value.buffer, f.value.byteOffset, f.value.byteLength);
      const width = f.field === TENSOR.floatData ? 4 : 8;
      for (let p = 0; p + width <= f.value.byteLength; p += width)
        listed.push(width === 4 ? view.getFloat32(p, true) : view.getFloat64(p, true));
    }
  }
  if (count > SMALL_CONSTANT) return undefined;
  if (!raw) return listed.length === count ? { name, values: listed } : undefined;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const read: Record<number, [number, (p: number) => number]> = {
    [DATA.float]: [4, (p) => view.getFloat32(p, true)],
    [DATA.double]: [8, (p) => view.getFloat64(p, true)],
    [DATA.int32]: [4, (p) => view.getInt32(p, true)],
    [DATA.int64]: [8, (p) => Number(view.getBigInt64(p, true))],
    [DATA.float16]: [2, (p) => halfToFloat(view.getUint16(p, true))],
  };
  const reader = read[type];
  if (!reader || raw.byteLength !== reader[0] * count) return undefined;
  return { name, values: Array.from({ length: count }, (_, i) => reader[1](i * reader[0])) };
}

export function readNode(bytes: Uint8Array): NodeInfo {
  const node: NodeInfo = { opType: "", name: "", inputs: [], outputs: [], ints: new Map(), floats: new Map(), raw: bytes };
  for (const f of fields(bytes)) {
    if (f.field === NODE.input) node.inputs.push(text(f));
    else if (f.field === NODE.output) node.outputs.push(text(f));
    else if (f.field === NODE.opType) node.opType = text(f);
    else if (f.field === NODE.name) node.name = text(f);
    else if (f.field === NODE.attribute) {
      let name = "";
      const ints: number[] = [];
      for (const a of fields(f.value)) {
        if (a.field === ATTR.name) name = text(a);
        else if (a.field === ATTR.i || a.field === ATTR.ints) ints.push(...varints(a));
        else if (a.field === ATTR.f) node.floats.set(name, new DataView(a.value.buffer, a.value.byteOffset, 4).getFloat32(0, true));
      }
      if (ints.length) node.ints.set(name, ints);
    }
  }
  return node;
}

/** The Constant node's value tensor, if it has one. */
function constantTensor(node: NodeInfo): Uint8Array | undefined {
  for (const f of fields(node.raw)) {
    if (f.field !== NODE.attribute) continue;
    let name = "";
    let tensor: Uint8Array | undefined;
    for (const a of fields(f.value)) {
      if (a.field === ATTR.name) name = text(a);
      else if (a.field === ATTR.t) tensor = a.value;
    }
    if (name === "value" && tensor) return tensor;
  }
  return undefined;
}

export function valueInfoName(bytes: Uint8Array): string {
  for (const f of fields(bytes)) if (f.field === VALUE_INFO.name) return text(f);
  return "";
}

export function readGraph(graph: Uint8Array): GraphInfo {
  const info: GraphInfo = {
    inputs: [],
    outputs: new Map(),
    nodes: [],
    inputInfo: new Map(),
    initializers: new Map(),
    constants: new Map(),
  };
  for (const f of fields(graph)) {
    if (f.field === GRAPH.node) info.nodes.push(readNode(f.value));
    else if (f.field === GRAPH.input) {
      const name = valueInfoName(f.value);
      info.inputs.push(name);
      info.inputInfo.set(name, f.value);
    } else if (f.field === GRAPH.output) info.outputs.set(valueInfoName(f.value), f.value);
    else if (f.field === GRAPH.initializer) {
      const t = smallTensorValues(f.value);
      let name = "";
      const dims: number[] = [];
      for (const n of fields(f.value)) {
        if (n.field === TENSOR.name) name = text(n);
        else if (n.field === TENSOR.dims) dims.push(...varints(n));
      }
      info.initializers.set(name, dims);
      if (t) info.constants.set(t.name, t.values);
    }
  }
  for (const n of info.nodes) addConstant(info, n);
  return info;
}

/** Records a Constant node's value in `graph.constants` when it is small. */
export function addConstant(graph: GraphInfo, n: NodeInfo): void {
  if (n.opType !== "Constant") return;
  const tensor = constantTensor(n);
  const t = tensor && smallTensorValues(tensor);
  if (t) graph.constants.set(n.outputs[0], t.values);
}

/** The version the model imports for an operator domain ("" is the default ONNX domain); 0 when none. */
export function opsetVersion(model: Uint8Array, domain = ""): number {
  for (const f of fields(model)) {
    if (f.field !== MODEL.opsetImport) continue;
    let name = "";
    let version = 0;
    for (const o of fields(f.value)) {
      if (o.field === OPSET.domain) name = text(o);
      else if (o.field === OPSET.version) version = Number(o.varint);
    }
    if (name === domain || (domain === "" && name === "ai.onnx")) return version;
  }
  return 0;
}
