/**
 * Takes an export's own `com.microsoft.GroupQueryAttention` nodes (onnxruntime-genai's model builder
 * writes them, and many onnx-community repositories hold such graphs) over a fixed-capacity KV cache,
 * as they are: only where each node's two length inputs come from is changed.
 *
 * Why: the fixed-capacity cache is the GPU's fast path (fuseAttention.ts says why), and these graphs
 * already compute attention as the fast path's own nodes do: each row's new keys and values written
 * at its length (`seqlens_k`: its filled slots after the pass, less one), attention to its filled
 * slots only, the rotary embedding (positions from `seqlens_k`), soft-capping and a sliding window
 * (`local_window_size`) inside the node. The exporter computes the two lengths from `attention_mask`
 * (its row sums, and its width); here they become the graph inputs SEQLENS_K and TOTAL_SEQUENCE_LENGTH
 * that the decoder feeds a fixed-capacity graph, and the mask's arithmetic goes with the mask.
 * Matching the exporter's patterns instead would rebuild what it already fused.
 */
import { SEQLENS_K, TOTAL_SEQUENCE_LENGTH } from "./fuseAttention";
import { NODE } from "./graphBuild";
import { GraphInfo, NodeInfo } from "./graphRead";
import { applyRewrites, GraphIndex, Rewrite } from "./graphRewrite";
import { bytesField, concat, fields } from "./protoWire";

const utf8 = new TextEncoder();

/** The node's bytes with its inputs renamed by `rename` (the rest, attributes included, as they were). */
function withInputs(n: NodeInfo, rename: (input: string, at: number) => string): Uint8Array {
  let at = 0;
  const parts = [...fields(n.raw)].map((f) => {
    if (f.field !== NODE.input) return f.raw;
    const name = n.inputs[at];
    const renamed = rename(name, at++);
    return renamed === name ? f.raw : bytesField(NODE.input, utf8.encode(renamed));
  });
  return concat(parts);
}

/** Whether `name` is computed from the graph input `from` and constants alone. */
function computedFrom(index: GraphIndex, name: string, from: string): boolean {
  let reached = false;
  for (const t of index.upstream(name)) {
    if (index.isGraphInput(t)) {
      if (t !== from) return false;
      reached = true;
    } else if (!index.producer.has(t) && !index.isWeight(t)) return false;
  }
  return reached;
}

/**
 * The graph with its GroupQueryAttention nodes fed SEQLENS_K and TOTAL_SEQUENCE_LENGTH (`adopted`: how
 * many), the nodes nothing reads any more dropped; or the graph as it was (`adopted`: 0) unless every
 * layer's cache (each past_key_values.{i}.key and .value input) is read by one such node and by nothing
 * else, both lengths come from `attention_mask` alone, and nothing else reads the mask.
 */
export function adoptGroupQueryAttention(graph: GraphInfo): { graph: GraphInfo; adopted: number } {
  const unchanged = { graph, adopted: 0 };
  const layers = graph.inputs.filter((i) => /^past_key_values\.\d+\.key$/.test(i)).length;
  const nodes = graph.nodes.filter((n) => n.opType === "GroupQueryAttention");
  if (layers === 0 || nodes.length !== layers || !graph.inputs.includes("attention_mask")) return unchanged;
  const index = new GraphIndex(graph);
  // Inputs: query, key, value, past_key, past_value, seqlens_k, total_sequence_length, then optional ones.
  const [seqlensK, totalLength] = [nodes[0].inputs[5], nodes[0].inputs[6]];
  for (const n of nodes) {
    const [pastKey, pastValue] = [n.inputs[3], n.inputs[4]];
    const cache = /^past_key_values\.(\d+)\.key$/.exec(pastKey ?? "");
    if (!cache || pastValue !== `past_key_values.${cache[1]}.value`) return unchanged;
    if ([pastKey, pastValue].some((p) => index.readers(p).length !== 1)) return unchanged;
    if (n.inputs[5] !== seqlensK || n.inputs[6] !== totalLength) return unchanged;
  }
  if (!seqlensK || !totalLength || ![seqlensK, totalLength].every((t) => computedFrom(index, t, "attention_mask"))) return unchanged;
  const rewrites: Rewrite[] = nodes.map((n) => ({
    replaced: [n],
    anchor: n,
    newNodes: [withInputs(n, (name, at) => (at === 5 ? SEQLENS_K : at === 6 ? TOTAL_SEQUENCE_LENGTH : name))],
  }));
  const adopted = applyRewrites(graph, rewrites);
  if (adopted.nodes.some((n) => n.inputs.includes("attention_mask"))) return unchanged;
  return { graph: adopted, adopted: nodes.length };
}
