/**
 * Fuses a residual connection and the layer norm after it (`LayerNorm(x + (h·W + b))`) into one
 * onnxruntime `com.microsoft.SkipLayerNormalization` node (an RMS norm, fuseRmsNorm.ts, into
 * `SkipSimplifiedLayerNormalization`), which also hands on the sum for the next residual.
 * Why: on a GPU a decode step is bound by kernel launches (fuseAttention.ts); this turns three
 * launches (bias add, residual add, layer norm) into one, twice per layer. onnxruntime fuses only a
 * residual sum that nothing else reads, which in a transformer is just the last.
 */
import { MS_DOMAIN, node } from "./graphBuild";
import { GraphInfo, NodeInfo } from "./graphRead";
import { applyRewrites, GraphIndex, Rewrite } from "./graphRewrite";

/**
 * Whether `name` is a projection's output: a MatMul's, or a quantized one's (a 4-bit MatMulNBits, or
 * onnxruntime's dynamic int8 MatMulInteger → Cast → Mul by the scales).
 */
function projected(index: GraphIndex, name: string): boolean {
  if (index.made(name, "MatMul") || index.made(name, "MatMulNBits")) return true;
  const scaled = index.made(name, "Mul");
  return !!scaled?.inputs.some((i) => {
    const cast = index.made(i, "Cast");
    return !!cast && !!index.made(cast.inputs[0], "MatMulInteger");
  });
}

/** The sublayer output of a residual sum: a projection's (projected), with its bias add folded in when there is one. */
function sublayerOutput(index: GraphIndex, name: string, sum: NodeInfo): { input: string; bias?: string; biasAdd?: NodeInfo } | undefined {
  if (projected(index, name)) return { input: name };
  const biasAdd = index.made(name, "Add");
  if (!biasAdd || index.readElsewhere(name, sum)) return undefined;
  const at = biasAdd.inputs.findIndex((i) => projected(index, i));
  const bias = biasAdd.inputs[1 - at];
  if (at < 0 || !index.weightDims(bias)) return undefined;
  return { input: biasAdd.inputs[at], bias, biasAdd };
}

function match(index: GraphIndex, ln: NodeInfo, n: number): Rewrite | undefined {
  const axis = ln.ints.get("axis")?.[0] ?? -1;
  const sum = index.made(ln.inputs[0], "Add");
  if (axis !== -1 || !sum || sum.inputs.some((i) => index.isWeight(i))) return undefined;
  // Either side may be the sublayer; the other is the residual stream (the skip).
  for (const side of [1, 0]) {
    const sublayer = sublayerOutput(index, sum.inputs[side], sum);
    if (!sublayer) continue;
    const keepSum = index.readElsewhere(sum.outputs[0], ln);
    const name = `smc_skip_ln${n}`;
    // The simplified norm has no β: its bias follows γ directly.
    const simplified = ln.opType === "SimplifiedLayerNormalization";
    const inputs = [sublayer.input, sum.inputs[1 - side], ln.inputs[1], ...(simplified ? [] : [ln.inputs[2] ?? ""]), sublayer.bias ?? ""];
    const fused = node(
      simplified ? "SkipSimplifiedLayerNormalization" : "SkipLayerNormalization",
      inputs,
      keepSum ? [ln.outputs[0], "", "", sum.outputs[0]] : [ln.outputs[0]],
      name,
      { epsilon: { float: ln.floats.get("epsilon") ?? 1e-5 } },
      MS_DOMAIN,
    );
    // In the residual sum's place: its inputs are made by then, and whatever reads the sum comes after.
    return { replaced: [sum, ln, ...(sublayer.biasAdd ? [sublayer.biasAdd] : [])], anchor: sum, newNodes: [fused] };
  }
  return undefined;
}

/** The graph with each residual sum + (Simplified)LayerNormalization fused (`fused`: how many). */
export function fuseSkipLayerNorm(graph: GraphInfo): { graph: GraphInfo; fused: number } {
  const index = new GraphIndex(graph);
  const norms = graph.nodes.filter((n) => n.opType === "LayerNormalization" || n.opType === "SimplifiedLayerNormalization");
  const rewrites = norms.map((ln, n) => match(index, ln, n)).filter((r): r is Rewrite => !!r);
  return { graph: applyRewrites(graph, rewrites), fused: rewrites.length };
}
