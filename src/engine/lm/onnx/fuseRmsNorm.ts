/**
 * Fuses an RMS norm as exporters write it (`w · x / √(mean(x²) + ε)`: Pow, ReduceMean, Add, Sqrt,
 * Div, Mul, Mul) into one onnxruntime `SimplifiedLayerNormalization` node: one kernel instead of six
 * or seven, twice per layer of a Llama-style model. Why: on a GPU a decode step is bound by kernel
 * launches (fuseAttention.ts). fuseSkipLayerNorm.ts then folds the residual sum before it in.
 */
import { node } from "./graphBuild";
import { GraphInfo, NodeInfo } from "./graphRead";
import { applyRewrites, GraphIndex, Rewrite } from "./graphRewrite";

/** The other input of a binary node, when one input is `name`. */
const other = (n: NodeInfo, name: string) => (n.inputs[0] === name ? n.inputs[1] : n.inputs[1] === name ? n.inputs[0] : undefined);

function match(index: GraphIndex, scaled: NodeInfo, n: number, opset: number): Rewrite | undefined {
  if (scaled.opType !== "Mul") return undefined;
  // w · normed, w a 1-D weight.
  const at = scaled.inputs.findIndex((i) => index.made(i, "Mul"));
  const weight = scaled.inputs[1 - at];
  if (at < 0 || index.weightDims(weight)?.length !== 1) return undefined;
  const normed = index.made(scaled.inputs[at], "Mul")!;
  if (!index.only(normed.outputs[0])) return undefined;
  // x · 1/√(mean(x²) + ε): find the reciprocal side, then check it is made from x. Half-precision
  // exports square and average in float32, with Casts around.
  const uncast = (name: string) => index.through(name, "Cast");
  for (const side of [0, 1]) {
    const x = normed.inputs[1 - side];
    const inverse = index.producer.get(normed.inputs[side]);
    const root =
      inverse?.opType === "Reciprocal"
        ? index.made(inverse.inputs[0], "Sqrt")
        : inverse?.opType === "Div" && index.scalar(inverse.inputs[0]) === 1
          ? index.made(inverse.inputs[1], "Sqrt")
          : undefined;
    const shifted = root && index.made(root.inputs[0], "Add");
    const meanOut = shifted?.inputs.find((i) => index.made(uncast(i), "ReduceMean"));
    const mean = meanOut !== undefined ? index.made(uncast(meanOut), "ReduceMean") : undefined;
    const epsilon = shifted && meanOut !== undefined ? index.scalar(other(shifted, meanOut) ?? "") : undefined;
    const square = mean && index.made(mean.inputs[0], "Pow");
    if (!inverse || !root || !shifted || !mean || epsilon === undefined || epsilon <= 0 || !square) continue;
    if (uncast(square.inputs[0]) !== x || index.scalar(square.inputs[1]) !== 2) continue;
    const axes = mean.ints.get("axes") ?? (opset >= 18 ? index.graph.constants.get(mean.inputs[1] ?? "") : undefined);
    if (axes?.length !== 1 || ![-1, 2].includes(axes[0]) || (mean.ints.get("keepdims")?.[0] ?? 1) !== 1) continue;
    const chain = [square, mean, shifted, root, inverse, normed];
    if (chain.slice(0, -1).some((c) => !index.only(c.outputs[0]))) continue;
    const fused = node("SimplifiedLayerNormalization", [x, weight], [scaled.outputs[0]], `smc_rms_norm${n}`, {
      axis: -1,
      epsilon: { float: epsilon },
    });
    return { replaced: [...chain, scaled], anchor: scaled, newNodes: [fused] };
  }
  return undefined;
}

/** The graph with each RMS norm made one SimplifiedLayerNormalization (`fused`: how many). */
export function fuseRmsNorm(graph: GraphInfo, opset: number): { graph: GraphInfo; fused: number } {
  const index = new GraphIndex(graph);
  const rewrites = graph.nodes.map((n, i) => match(index, n, i, opset)).filter((r): r is Rewrite => !!r);
  return { graph: applyRewrites(graph, rewrites), fused: rewrites.length };
}
