/** Encoders for the few ONNX protobuf messages the graph edits add: nodes, constants, value infos. */
import { floatToHalf } from "../decoder/tensorData";
import { bytesField, concat, message } from "./protoWire";

// ONNX field numbers (onnx.proto3).
export const MODEL = { irVersion: 1, producerName: 2, graph: 7, opsetImport: 8 };
export const OPSET = { domain: 1, version: 2 };
export const GRAPH = { node: 1, name: 2, initializer: 5, input: 11, output: 12 };
export const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5, domain: 7 };
export const ATTR = { name: 1, type: 20, f: 2, i: 3, t: 5, g: 6, ints: 8, graphs: 11 };
export const VALUE_INFO = { name: 1, type: 2 };
export const TYPE = { tensor: 1 };
export const TENSOR_TYPE = { elemType: 1, shape: 2 };
const TENSOR = { dims: 1, dataType: 2, name: 8, rawData: 9 };
const DIM = { value: 1, param: 2 };
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_TENSOR = 4;
const ATTR_INTS = 7;

/** onnxruntime's contrib operators (the fused nodes), and the opset import their graph needs. */
export const MS_DOMAIN = "com.microsoft";
export const msOpsetImport = () =>
  message([
    [OPSET.domain, MS_DOMAIN],
    [OPSET.version, 1],
  ]);

/** TensorProto.DataType values used here. */
export const DTYPE = { float: 1, int32: 6, int64: 7, float16: 10 } as const;

export type Attr = number | { float: number } | { tensor: Uint8Array } | { ints: number[] };

export function attribute(name: string, v: Attr): Uint8Array {
  if (typeof v === "number")
    return message([
      [ATTR.name, name],
      [ATTR.type, ATTR_INT],
      [ATTR.i, v],
    ]);
  if ("float" in v) {
    const f = new Uint8Array(4);
    new DataView(f.buffer).setFloat32(0, v.float, true);
    return concat([
      message([
        [ATTR.name, name],
        [ATTR.type, ATTR_FLOAT],
      ]),
      Uint8Array.from([(ATTR.f << 3) | 5]),
      f,
    ]);
  }
  if ("tensor" in v)
    return message([
      [ATTR.name, name],
      [ATTR.type, ATTR_TENSOR],
      [ATTR.t, v.tensor],
    ]);
  return message([[ATTR.name, name], [ATTR.type, ATTR_INTS], ...v.ints.map((i) => [ATTR.ints, i] as [number, number])]);
}

export function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  name: string,
  attrs: Record<string, Attr> = {},
  domain?: string,
): Uint8Array {
  const encoded = Object.entries(attrs).map(([k, v]) => [NODE.attribute, attribute(k, v)] as [number, Uint8Array]);
  const inDomain = domain ? [[NODE.domain, domain] as [number, string]] : [];
  return message([
    ...inputs.map((i) => [NODE.input, i] as [number, string]),
    ...outputs.map((o) => [NODE.output, o] as [number, string]),
    [NODE.name, name],
    [NODE.opType, opType],
    ...encoded,
    ...inDomain,
  ]);
}

/** A TensorProto of little-endian raw data, named when it is an initializer. */
function tensorProto(dims: number[], dataType: number, data: Float32Array | BigInt64Array | Uint16Array, name?: string): Uint8Array {
  const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return message([
    ...dims.map((d) => [TENSOR.dims, d] as [number, number]),
    [TENSOR.dataType, dataType],
    ...(name ? [[TENSOR.name, name] as [number, string]] : []),
    [TENSOR.rawData, raw],
  ]);
}

/** A TensorProto holding int64, float or float16 values. */
export function tensor(type: "int64" | "float" | "float16", dims: number[], values: number[]): Uint8Array {
  if (type === "float16") return tensorProto(dims, DTYPE.float16, Uint16Array.from(values, floatToHalf));
  return tensorProto(dims, DTYPE[type], type === "int64" ? BigInt64Array.from(values, BigInt) : Float32Array.from(values));
}

/** A named float32 initializer (a weight of a graph built here). */
export function initializer(name: string, dims: number[], data: Float32Array): Uint8Array {
  return tensorProto(dims, DTYPE.float, data, name);
}

/** A whole model around a graph body (nodes, initializers, inputs, outputs) at the given default-domain opset. */
export function modelBytes(name: string, body: Uint8Array[], opset: number): Uint8Array {
  const graph = concat([...body, message([[GRAPH.name, name]])]);
  return message([
    [MODEL.irVersion, 8],
    [MODEL.producerName, "twisted-smc"],
    [
      MODEL.opsetImport,
      message([
        [OPSET.domain, ""],
        [OPSET.version, opset],
      ]),
    ],
    [MODEL.graph, graph],
  ]);
}

/** A Constant node producing `name`. */
export function constant(name: string, type: "int64" | "float" | "float16", dims: number[], values: number[]): Uint8Array {
  return node("Constant", [], [name], name, { value: { tensor: tensor(type, dims, values) } });
}

export function tensorValueInfo(name: string, elem: number, dims: (string | number)[]): Uint8Array {
  const shape = concat(dims.map((d) => bytesField(1, message([[typeof d === "number" ? DIM.value : DIM.param, d]]))));
  const tensorType = message([
    [TENSOR_TYPE.elemType, elem],
    [TENSOR_TYPE.shape, shape],
  ]);
  return message([
    [VALUE_INFO.name, name],
    [VALUE_INFO.type, message([[TYPE.tensor, tensorType]])],
  ]);
}
