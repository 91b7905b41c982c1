/**
 * Folds the bias add of a layer's fused query/key/value projection (`Split(x·W + b)`, as GPT-2
 * exports write it) into one `Gemm`: one kernel instead of two. Why: on a GPU a decode step is bound
 * by kernel launches (fuseAttention.ts). Gemm takes rows, so the (batch, sequence, width) activation
 * is reshaped to rows and back, which costs no kernel; the (batch, sequence) it goes back to is
 * `input_ids`' shape, taken once for the whole graph.
 *
 * Only projections read by a Split (GPT-2's query/key/value in one) or by Reshapes and rotary
 * embeddings (Qwen2's separate query, key and value projections) are folded: the layers' other biases already go
 * elsewhere (into SkipLayerNormalization, fuseSkipLayerNorm.ts, and onnxruntime's own BiasGelu).
 */
import { constant, node } from "./graphBuild";
import { GraphInfo, NodeInfo } from "./graphRead";
import { applyRewrites, GraphIndex, Rewrite } from "./graphRewrite";

const INPUT_IDS = "input_ids";

interface Projection {
  /** The activation, its width and the projection's. */
  x: string;
  inWidth: number;
  outWidth: number;
  weight: string;
  bias: string;
  matmul: NodeInfo;
  add: NodeInfo;
}

function match(index: GraphIndex, add: NodeInfo): Projection | undefined {
  const at = add.inputs.findIndex((i) => index.made(i, "MatMul"));
  if (add.opType !== "Add" || at < 0) return undefined;
  const matmul = index.made(add.inputs[at], "MatMul")!;
  const bias = add.inputs[1 - at];
  const [weightDims, biasDims] = [index.weightDims(matmul.inputs[1]), index.weightDims(bias)];
  if (weightDims?.length !== 2 || biasDims?.length !== 1 || biasDims[0] !== weightDims[1] || !index.only(matmul.outputs[0]))
    return undefined;
  const readers = index.readers(add.outputs[0]);
  // Along the width (−1, or 2 of the three axes the output keeps).
  const splitLast = (n: NodeInfo) => n.opType === "Split" && [-1, 2].includes(n.ints.get("axis")?.[0] ?? 0);
  // Or reshaped into heads, or rotated first (fuseRotary.ts): Qwen2's separate query, key and value
  // projections, each with a bias.
  const reshaped = (n: NodeInfo) => ["Reshape", "RotaryEmbedding"].includes(n.opType) && n.inputs[0] === add.outputs[0];
  if (!readers.length || !(readers.every(splitLast) || readers.every(reshaped)) || index.graph.outputs.has(add.outputs[0]))
    return undefined;
  return { x: matmul.inputs[0], inWidth: weightDims[0], outWidth: weightDims[1], weight: matmul.inputs[1], bias, matmul, add };
}

/** The graph with each such projection's MatMul + Add made one Gemm (`fused`: how many). */
export function fuseProjectionBias(graph: GraphInfo): { graph: GraphInfo; fused: number } {
  const index = new GraphIndex(graph);
  if (!index.isGraphInput(INPUT_IDS)) return { graph, fused: 0 };
  const projections = graph.nodes.map((n) => match(index, n)).filter((p): p is Projection => !!p);
  const shapes = new Set<number>();
  const rewrites: Rewrite[] = projections.map((p, n) => {
    const name = `smc_gemm${n}`;
    const newNodes: Uint8Array[] = [];
    // (batch, sequence, outWidth), made once per width, before its first use.
    const backShape = `smc_gemm/batch_sequence_${p.outWidth}`;
    if (!shapes.size) newNodes.push(node("Shape", [INPUT_IDS], ["smc_gemm/batch_sequence"], "smc_gemm/batch_sequence"));
    if (!shapes.has(p.outWidth)) {
      shapes.add(p.outWidth);
      newNodes.push(constant(`${backShape}/width`, "int64", [1], [p.outWidth]));
      newNodes.push(node("Concat", ["smc_gemm/batch_sequence", `${backShape}/width`], [backShape], backShape, { axis: 0 }));
    }
    newNodes.push(
      constant(`${name}/rows_shape`, "int64", [2], [-1, p.inWidth]),
      node("Reshape", [p.x, `${name}/rows_shape`], [`${name}/rows`], `${name}/rows`),
      node("Gemm", [`${name}/rows`, p.weight, p.bias], [`${name}/out_rows`], `${name}/Gemm`),
      node("Reshape", [`${name}/out_rows`, backShape], [p.add.outputs[0]], `${name}/out`),
    );
    return { replaced: [p.matmul, p.add], anchor: p.add, newNodes };
  });
  return { graph: applyRewrites(graph, rewrites), fused: rewrites.length };
}
