/**
 * Where the LM head reads the hidden state: walking back from `logits` through what follows the head
 * (soft-capping, casts, reshapes) to the head itself, fp32 or quantized. prepareGraph.ts exposes what
 * it finds as `last_hidden_state`.
 */
import type { GraphInfo, NodeInfo } from "./graphRead";

/** Ops the head search walks back through: elementwise ops after the head (Gemma's soft-capping Div → Tanh → Mul among them), casts, reshapes. */
const HEAD_PASS_THROUGH = new Set(["Add", "Mul", "Div", "Tanh", "Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze"]);

/**
 * The tensor a head's activation input was computed from: the activation itself, or, where the head
 * reads it quantized (DynamicQuantizeLinear's uint8 copy for a MatMulInteger, a QuantizeLinear →
 * DequantizeLinear pair before a MatMul), the float tensor that was quantized.
 */
function unquantized(name: string, producer: Map<string, NodeInfo>): string {
  const p = producer.get(name);
  if (p?.opType === "DynamicQuantizeLinear" && p.outputs[0] === name) return p.inputs[0];
  if (p?.opType === "DequantizeLinear") {
    const q = producer.get(p.inputs[0]);
    if (q?.opType === "QuantizeLinear") return q.inputs[0];
  }
  return name;
}

/**
 * The LM head's input (the hidden state) if `n` is an LM head: a MatMul or Gemm (its weight may come
 * through a DequantizeLinear), onnxruntime's 4-bit MatMulNBits (com.microsoft; its attributes K and N
 * say it is one), or a MatMulInteger whose activation is DynamicQuantizeLinear's output (the int8
 * pattern of onnxruntime's quantize_dynamic: → MatMulInteger → Cast → Mul by the scales, which the
 * search passes through).
 */
function headActivation(n: NodeInfo, producer: Map<string, NodeInfo>): string | undefined {
  if (n.opType === "MatMul" || n.opType === "Gemm") return unquantized(n.inputs[0], producer);
  if (n.opType === "MatMulNBits" && n.ints.has("K") && n.ints.has("N")) return n.inputs[0];
  if (n.opType === "MatMulInteger") {
    const a = unquantized(n.inputs[0], producer);
    return a === n.inputs[0] ? undefined : a;
  }
  return undefined;
}

/**
 * The input of the LM head: walk back from `logits` through elementwise ops (HEAD_PASS_THROUGH) to the
 * head (headActivation). Where an op has several computed inputs (a quantized head's Mul of its integer
 * product and its scales) each is tried in turn. Throws, naming where the search stopped, when none leads to a head.
 */
export function findHeadInput(graph: GraphInfo): string {
  const producer = new Map<string, NodeInfo>();
  for (const n of graph.nodes) for (const o of n.outputs) producer.set(o, n);
  const stops: string[] = [];
  const search = (name: string, hops: number): string | undefined => {
    const n = producer.get(name);
    if (!n || hops >= 16) return undefined;
    const found = headActivation(n, producer);
    if (found) return found;
    if (!HEAD_PASS_THROUGH.has(n.opType)) {
      stops.push(n.opType);
      return undefined;
    }
    // Follow the inputs that are themselves computed (not constant weights or scales).
    for (const next of n.inputs.filter((i) => producer.has(i) && producer.get(i)!.opType !== "Constant")) {
      const hidden = search(next, hops + 1);
      if (hidden) return hidden;
    }
    return undefined;
  };
  const hidden = search("logits", 0);
  if (hidden) return hidden;
  const where = stops.length ? ` (the search stopped at ${[...new Set(stops)].join(", ")})` : "";
  throw new Error(`cannot find the LM head (a MatMul or Gemm feeding "logits") to expose last_hidden_state${where}`);
}
