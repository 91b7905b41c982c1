/**
 * Test helper: a float32 decoder export quantized as the quantizing tools write them, made with the
 * engine's own wire-format tools at test time (no Python onnx needed):
 * - "q4": com.microsoft MatMulNBits, 4 bits in blocks of 32 along K (onnxruntime's
 *   matmul_4bits_quantizer): B the weight transposed (N × K) as uint8 [N, blocks, 16], two values a
 *   byte, low nibble first; scales float32 [N × blocks]; no zero_points (the default, 8);
 * - "int8": onnxruntime's quantize_dynamic: DynamicQuantizeLinear(A) → MatMulInteger(A_q, W_q int8, A_zp,
 *   W_zp) → Cast to float → Mul by A_scale × W_scale (one scale per weight);
 * - "dq": the weight stored int8 and dequantized in the graph, DequantizeLinear → MatMul (QDQ exports);
 * - "qdq": "dq" with the activation quantized too, QuantizeLinear → DequantizeLinear (int8, a fixed
 *   scale of ACTIVATION_SCALE, as a static quantizer's calibration would give one).
 * `only: "head"` quantizes the LM head alone (the MatMul that makes `logits`); "all", every MatMul whose
 * weight is a 2-D float initializer. The export's last_hidden_state output is taken away and the
 * tensor renamed, so only the LM head search can find it again.
 */
import { GRAPH, MODEL, MS_DOMAIN, msOpsetImport, node, NODE } from "../../src/engine/lm/onnx/graphBuild";
import { NodeInfo, readNode, valueInfoName } from "../../src/engine/lm/onnx/graphRead";
import { bytesField, concat, Field, fields, message, text } from "../../src/engine/lm/onnx/protoWire";
import { quantizeInt8, quantizeQ4 } from "../../scripts/fixtures/quantize";

export type QuantScheme = "q4" | "int8" | "dq" | "qdq";
export interface QuantizeOptions {
  scheme: QuantScheme;
  only: "head" | "all";
  /** Gemma 2's final soft-capping after the head: logits = cap × tanh(logits / cap). */
  softCap?: number;
}

const TENSOR = { dims: 1, dataType: 2, floatData: 4, name: 8, rawData: 9 };
const DT = { float: 1, uint8: 2, int8: 3 };
const HIDDEN = "last_hidden_state";
/** The activations' int8 step in "qdq": ±12.7 covers the shipped model's hidden states. */
const ACTIVATION_SCALE = 0.1;
const RENAMED = "/model/norm/output_0";

function tensorBytes(name: string, dims: number[], dataType: number, data: Uint8Array): Uint8Array {
  return message([
    ...dims.map((d) => [TENSOR.dims, d] as [number, number]),
    [TENSOR.dataType, dataType],
    [TENSOR.name, name],
    [TENSOR.rawData, data],
  ]);
}
const floats = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** A float32 initializer's dims and values, or undefined for other types. */
function readFloatTensor(t: Uint8Array): { name: string; dims: number[]; values: Float32Array } | undefined {
  let name = "";
  let type = 0;
  const dims: number[] = [];
  let raw: Uint8Array | undefined;
  for (const f of fields(t)) {
    if (f.field === TENSOR.dims) dims.push(Number(f.varint));
    else if (f.field === TENSOR.dataType) type = Number(f.varint);
    else if (f.field === TENSOR.name) name = text(f);
    else if (f.field === TENSOR.rawData || f.field === TENSOR.floatData) raw = f.value;
  }
  if (type !== DT.float || !raw) return undefined;
  const copy = new Uint8Array(raw); // a copy (a Buffer's slice would be a view)
  return { name, dims, values: new Float32Array(copy.buffer, 0, copy.byteLength / 4) };
}

const renameIn = (n: Uint8Array) =>
  concat(
    [...fields(n)].map((f: Field) =>
      (f.field === NODE.input || f.field === NODE.output) && text(f) === HIDDEN ? message([[f.field, RENAMED]]) : f.raw,
    ),
  );

/** The export quantized as `options` say (see the file's comment). */
export function quantizeModel(model: Uint8Array, options: QuantizeOptions): Uint8Array {
  const graphField = [...fields(model)].find((f) => f.field === MODEL.graph)!;
  const weights = new Map<string, { dims: number[]; values: Float32Array }>();
  for (const f of fields(graphField.value))
    if (f.field === GRAPH.initializer) {
      const t = readFloatTensor(f.value);
      if (t && t.dims.length === 2) weights.set(t.name, t);
    }
  const replaced = new Set<string>();
  const newInits: Uint8Array[] = [];
  const rewrite = (n: NodeInfo): Uint8Array[] => {
    const isHead = n.outputs[0] === "logits" || (options.softCap !== undefined && n.outputs[0] === "logits_uncapped");
    const w = n.opType === "MatMul" ? weights.get(n.inputs[1]) : undefined;
    if (!w || (options.only === "head" && !isHead)) return [n.raw];
    const [K, N] = w.dims;
    const [a, y] = [n.inputs[0], n.outputs[0]];
    const p = `${n.name || y}_quant`;
    replaced.add(n.inputs[1]);
    if (options.scheme === "q4") {
      const q = quantizeQ4(w.values, K, N);
      newInits.push(
        tensorBytes(`${p}_B`, [N, q.blocks, 16], DT.uint8, q.packed),
        tensorBytes(`${p}_scales`, [N * q.blocks], DT.float, floats(q.scales)),
      );
      return [node("MatMulNBits", [a, `${p}_B`, `${p}_scales`], [y], p, { K, N, bits: 4, block_size: 32 }, MS_DOMAIN)];
    }
    const q = quantizeInt8(w.values);
    newInits.push(
      tensorBytes(`${p}_W`, [K, N], DT.int8, q.q),
      tensorBytes(`${p}_W_scale`, [], DT.float, floats(Float32Array.of(q.scale))),
      tensorBytes(`${p}_W_zp`, [], DT.int8, Uint8Array.of(0)),
    );
    const dequantizeWeight = node("DequantizeLinear", [`${p}_W`, `${p}_W_scale`, `${p}_W_zp`], [`${p}_W_deq`], `${p}_dq`);
    if (options.scheme === "dq") return [dequantizeWeight, node("MatMul", [a, `${p}_W_deq`], [y], p)];
    if (options.scheme === "qdq") {
      newInits.push(tensorBytes(`${p}_A_scale`, [], DT.float, floats(Float32Array.of(ACTIVATION_SCALE))));
      return [
        dequantizeWeight,
        node("QuantizeLinear", [a, `${p}_A_scale`, `${p}_W_zp`], [`${p}_A_q`], `${p}_qa`),
        node("DequantizeLinear", [`${p}_A_q`, `${p}_A_scale`, `${p}_W_zp`], [`${p}_A_deq`], `${p}_dqa`),
        node("MatMul", [`${p}_A_deq`, `${p}_W_deq`], [y], p),
      ];
    }
    return [
      node("DynamicQuantizeLinear", [a], [`${p}_q`, `${p}_scale`, `${p}_zp`], `${p}_dql`),
      node("MatMulInteger", [`${p}_q`, `${p}_W`, `${p}_zp`, `${p}_W_zp`], [`${p}_int32`], `${p}_mmi`),
      node("Cast", [`${p}_int32`], [`${p}_float`], `${p}_cast`, { to: DT.float }),
      node("Mul", [`${p}_scale`, `${p}_W_scale`], [`${p}_scales`], `${p}_scales_mul`),
      node("Mul", [`${p}_float`, `${p}_scales`], [y], `${p}_out`),
    ];
  };
  const body: (Uint8Array | Field)[] = [];
  for (const f of fields(graphField.value)) {
    if (f.field === GRAPH.output && valueInfoName(f.value) === HIDDEN) continue;
    if (f.field !== GRAPH.node) {
      body.push(f);
      continue;
    }
    let n = readNode(renameIn(f.value));
    if (options.softCap !== undefined && n.outputs[0] === "logits") {
      n = readNode(concat([...fields(n.raw)].map((g) => (g.field === NODE.output ? message([[NODE.output, "logits_uncapped"]]) : g.raw))));
      const cap = options.softCap;
      body.push(...rewrite(n).map((r) => bytesField(GRAPH.node, r)));
      newInits.push(tensorBytes("soft_cap", [], DT.float, floats(Float32Array.of(cap))));
      body.push(
        bytesField(GRAPH.node, node("Div", ["logits_uncapped", "soft_cap"], ["logits_scaled"], "soft_cap_div")),
        bytesField(GRAPH.node, node("Tanh", ["logits_scaled"], ["logits_tanh"], "soft_cap_tanh")),
        bytesField(GRAPH.node, node("Mul", ["logits_tanh", "soft_cap"], ["logits"], "soft_cap_mul")),
      );
      continue;
    }
    body.push(...rewrite(n).map((r) => bytesField(GRAPH.node, r)));
  }
  const kept = body
    .filter((b) => {
      if (b instanceof Uint8Array) return true;
      if (b.field !== GRAPH.initializer) return true;
      const t = readFloatTensor(b.value);
      return !t || !replaced.has(t.name);
    })
    .map((b) => (b instanceof Uint8Array ? b : b.raw));
  const graph = concat([...kept, ...newInits.map((t) => bytesField(GRAPH.initializer, t))]);
  const out = [...fields(model)].map((f) => (f.field === MODEL.graph ? bytesField(MODEL.graph, graph) : f.raw));
  if (options.scheme === "q4") out.push(bytesField(MODEL.opsetImport, msOpsetImport()));
  return concat(out);
}
