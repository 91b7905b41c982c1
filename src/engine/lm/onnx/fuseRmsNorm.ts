/**
 * Fuses an RMS norm as exporters write it (`w · x / √(mean(x²) + ε)`: Pow, ReduceMean, Add, Sqrt,
 * then Reciprocal and Mul, or a Div by the root; then the weight's Mul) into one onnxruntime
 * `SimplifiedLayerNormalization` node: one kernel instead of six or seven, twice per layer of a
 * Llama-style model. Why: on a GPU a decode step is bound by kernel
 * launches (fuseAttention.ts). fuseSkipLayerNorm.ts then folds the residual sum before it in.
 */
import { node } from "./graphBuild";
import { GraphInfo, NodeInfo } from "./graphRead";
import { applyRewrites, GraphIndex, Rewrite } from "./graphRewrite";

/** The other input of a binary node, when one input is `name`. */
const other = (n: NodeInfo, name: string) => (n.inputs[0] === name ? n.inputs[1] : n.inputs[1] === name ? n.inputs[0] : undefined);

function match(index: GraphIndex, scaled: NodeInfo, n: number, opset: number): Rewrite | undefined {
  if (scaled.opType !== "Mul") return undefined;
  // w · normed, w a 1-D weight; normed perhaps cast back to the activations' precision first.
  const uncast = (name: string) => index.through(name, "Cast");
  const at = scaled.inputs.findIndex((i) => ["Mul", "Div"].includes(index.producer.get(uncast(i))?.opType ?? ""));
  const weight = scaled.inputs[1 - at];
  if (at < 0 || index.weightDims(weight)?.length !== 1) return undefined;
  const castsBack: NodeInfo[] = [];
  for (let c = index.made(scaled.inputs[at], "Cast"); c; c = index.made(c.inputs[0], "Cast")) castsBack.push(c);
  const normed = index.producer.get(uncast(scaled.inputs[at]))!;
  if (!index.only(normed.outputs[0]) || castsBack.some((c) => !index.only(c.outputs[0]))) return undefined;
  // x · 1/√(mean(x²) + ε) (transformers' rsqrt), or x / √(mean(x²) + ε): find the root, then check it
  // is made from x. Half-precision exports square and average in float32, with Casts around.
  const sides: { x: string; inverse?: NodeInfo; root?: NodeInfo }[] =
    normed.opType === "Div"
      ? [{ x: normed.inputs[0], root: index.made(normed.inputs[1], "Sqrt") }]
      : [0, 1].map((side) => {
          const inverse = index.producer.get(normed.inputs[side]);
          const root =
            inverse?.opType === "Reciprocal"
              ? index.made(inverse.inputs[0], "Sqrt")
              : inverse?.opType === "Div" && index.scalar(inverse.inputs[0]) === 1
                ? index.made(inverse.inputs[1], "Sqrt")
                : undefined;
          return { x: normed.inputs[1 - side], inverse, root };
        });
  for (const { x, inverse, root } of sides) {
    const shifted = root && index.made(root.inputs[0], "Add");
    const meanOut = shifted?.inputs.find((i) => index.made(uncast(i), "ReduceMean"));
    const mean = meanOut !== undefined ? index.made(uncast(meanOut), "ReduceMean") : undefined;
    const epsilon = shifted && meanOut !== undefined ? index.scalar(other(shifted, meanOut) ?? "") : undefined;
    const square = mean && index.made(mean.inputs[0], "Pow");
    if (!root || !shifted || !mean || epsilon === undefined || epsilon <= 0 || !square) continue;
    if (index.scalar(square.inputs[1]) !== 2) continue;
    // The norm reads x as the square does, or (x / √…) the same x cast to float32: the fused node reads the uncast x.
    const input =
      uncast(square.inputs[0]) === x ? x : uncast(square.inputs[0]) === uncast(x) && normed.opType === "Div" ? uncast(x) : undefined;
    if (input === undefined) continue;
    const axes = mean.ints.get("axes") ?? (opset >= 18 ? index.graph.constants.get(mean.inputs[1] ?? "") : undefined);
    if (axes?.length !== 1 || ![-1, 2].includes(axes[0]) || (mean.ints.get("keepdims")?.[0] ?? 1) !== 1) continue;
    const chain = [square, mean, shifted, root, ...(inverse ? [inverse] : []), normed];
    if (chain.slice(0, -1).some((c) => !index.only(c.outputs[0]))) continue;
    const fused = node("SimplifiedLayerNormalization", [input, weight], [scaled.outputs[0]], `smc_rms_norm${n}`, {
      axis: -1,
      epsilon: { float: epsilon },
    });
    return { replaced: [...chain, ...castsBack, scaled], anchor: scaled, newNodes: [fused] };
  }
  return undefined;
}

/** The graph with each RMS norm made one SimplifiedLayerNormalization (`fused`: how many). */
export function fuseRmsNorm(graph: GraphInfo, opset: number): { graph: GraphInfo; fused: number } {
  const index = new GraphIndex(graph);
  const rewrites = graph.nodes.map((n, i) => match(index, n, i, opset)).filter((r): r is Rewrite => !!r);
  return { graph: applyRewrites(graph, rewrites), fused: rewrites.length };
}
