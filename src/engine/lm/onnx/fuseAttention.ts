/**
 * Fuses each layer's attention, as exporters write it (scores = q·kᵀ scaled, plus a mask, softmax,
 * times v, with the new keys and values concatenated onto the cache), into one onnxruntime
 * `com.microsoft.MultiHeadAttention` node.
 *
 * Why: on a GPU a decode step is bound by kernel launches, not arithmetic. A GPT-2-small step at
 * K = 16 was 373 WebGPU dispatches, 9.4 ms of GPU work in 25.8 ms (README, "On a GPU"); each layer's
 * attention was about 20 nodes, among them a transpose of the whole key cache every step. The fused
 * node keeps the graph's interface: it reads the same past_key_values inputs and writes the same
 * present tensors (by name), so the KV cache, its reordering and the SMC code see no difference.
 *
 * With grouped-query attention (fewer key/value heads, widened to the query heads before attention)
 * the fused node takes the widened keys and values whole and the cache stays as exported. Only the
 * exact pattern is fused: anything else (a score reused elsewhere, a scale that is not a constant) is
 * left as it is.
 *
 * With `fixedCapacity` (every layer matched with its cache), each layer becomes a
 * `com.microsoft.GroupQueryAttention` node instead, over a cache of fixed capacity. A grouped-query
 * model's cache is found behind its widening (Hugging Face's repeat_kv: Unsqueeze at axis 2, Expand,
 * Reshape), which the node makes unnecessary: it reads the cache with its own kv_num_heads, as
 * exported, and groups the query heads itself. The node writes the new
 * keys and values at each row's own length (the graph inputs SEQLENS_K and TOTAL_SEQUENCE_LENGTH)
 * and attends causally to that row's filled slots, so the exporter's mask goes unused and the cache
 * tensors keep their shape from step to step. Why: onnxruntime's WebGPU buffer cache keeps at most 10
 * free buffers of a size, so of a step's 24 new cache tensors 14 are made anew, each costing about
 * 0.8 ms of CPU time on an H100 (README, "On a GPU"); tensors of a fixed size can all be reused.
 */
import { Attr, constant, MS_DOMAIN, node } from "./graphBuild";
import { GraphInfo, NodeInfo } from "./graphRead";
import { applyRewrites, GraphIndex, Heads, isPerm, Rewrite } from "./graphRewrite";

/**
 * A model's sliding window by layer, as its config says (modelFolder.ts, slidingWindowLayers): the
 * window's tokens (the query's own included, as transformers' mask counts them) and whether each layer
 * slides. Over a fixed capacity the window goes into GroupQueryAttention's `local_window_size`, counted
 * over the row's own tokens (the exporter's mask counted a held row's masked slot as one of them).
 */
export interface AttentionWindows {
  size: number;
  sliding: boolean[];
}

/** The fixed-capacity graph's inputs: per row, its filled slots after this pass minus one (int32 [batch]); the most of them plus one (int32 scalar). */
export const SEQLENS_K = "smc_seqlens_k";
export const TOTAL_SEQUENCE_LENGTH = "smc_total_sequence_length";

const isSeqAxis = (n: NodeInfo) => [2, -2].includes(n.ints.get("axis")?.[0] ?? NaN);

/** Builds the fusions of a graph; names of new tensors start with `smc_mha<layer>/`. */
class AttentionFuser {
  private readonly index: GraphIndex;
  private readonly constants: Map<string, number[]>;

  constructor(
    graph: GraphInfo,
    private readonly numHeads: number,
    private readonly numKvHeads: number,
    private readonly headDim: number,
    private readonly opset: number,
    private readonly fixedCapacity = false,
    private readonly windows?: AttentionWindows,
  ) {
    this.index = new GraphIndex(graph);
    this.constants = graph.constants;
  }

  /** `Concat(past, new)` along the sequence axis, past a graph input: [past, new]. */
  private cacheConcat(name: string): [string, string] | undefined {
    const c = this.index.producer.get(name);
    if (c?.opType !== "Concat" || c.inputs.length !== 2 || !isSeqAxis(c) || !this.index.isGraphInput(c.inputs[0])) return undefined;
    return [c.inputs[0], c.inputs[1]];
  }

  /**
   * The tensor behind grouped-query attention's widening of `name` to the query heads (Hugging Face's
   * repeat_kv: Unsqueeze at axis 2, Expand, Reshape, each read by the next alone), and those nodes.
   */
  private unwiden(name: string): { narrow: string; nodes: NodeInfo[] } | undefined {
    const reshape = this.index.producer.get(name);
    const expand =
      reshape?.opType === "Reshape" && this.index.only(reshape.inputs[0]) ? this.index.producer.get(reshape.inputs[0]) : undefined;
    const unsqueeze =
      expand?.opType === "Expand" && this.index.only(expand.inputs[0]) ? this.index.producer.get(expand.inputs[0]) : undefined;
    if (unsqueeze?.opType !== "Unsqueeze") return undefined;
    const axes = unsqueeze.inputs[1] ? this.constants.get(unsqueeze.inputs[1]) : unsqueeze.ints.get("axes");
    if (axes?.length !== 1 || axes[0] !== 2) return undefined;
    return { narrow: unsqueeze.inputs[0], nodes: [unsqueeze, expand!, reshape!] };
  }

  /** Whether a Reshape's target shape is [·, ·, heads, headDim] (one of the two may be −1). */
  private splitsHeads(shapeName: string, heads: number): boolean {
    const [n, h] = this.index.headSplit(shapeName) ?? [];
    return (n === heads || n === -1) && (h === this.headDim || h === -1) && !(n === -1 && h === -1);
  }

  /**
   * The (batch, sequence, heads × headDim) tensor behind a (batch, heads, sequence, headDim) one:
   * the exporter's own when it made it by Reshape + Transpose, else one made here.
   */
  private toBsd(bnsh: string, prefix: string, out: Uint8Array[], heads = this.numHeads): string {
    const t = this.index.producer.get(bnsh);
    const r = t && isPerm(t, "0,2,1,3") ? this.index.producer.get(t.inputs[0]) : undefined;
    if (r?.opType === "Reshape" && this.splitsHeads(r.inputs[1], heads)) return r.inputs[0];
    const shape = `${prefix}_bsd_shape`;
    out.push(constant(shape, "int64", [3], [0, 0, heads * this.headDim]));
    out.push(node("Transpose", [bnsh], [`${prefix}_bsnh`], `${prefix}_bsnh`, { perm: { ints: [0, 2, 1, 3] } }));
    out.push(node("Reshape", [`${prefix}_bsnh`, shape], [`${prefix}_bsd`], `${prefix}_bsd`));
    return `${prefix}_bsd`;
  }

  /**
   * Gemma-2's soft-capping of the scores, cap · tanh(x / cap) (Mul of Tanh of Div, one constant), as the
   * node that makes `name`: the cap, x, and its nodes; else undefined.
   */
  private softcap(name: string): { cap: number; inner: string; nodes: NodeInfo[] } | undefined {
    const mul = this.index.made(name, "Mul");
    const at = mul ? mul.inputs.findIndex((i) => this.index.made(i, "Tanh")) : -1;
    if (!mul || at < 0 || !this.index.only(mul.inputs[at])) return undefined;
    const cap = this.index.scalar(mul.inputs[1 - at]);
    const tanh = this.index.producer.get(mul.inputs[at])!;
    const div = this.index.made(tanh.inputs[0], "Div");
    if (cap === undefined || !div || !this.index.only(div.outputs[0]) || this.index.scalar(div.inputs[1]) !== cap) return undefined;
    return { cap, inner: div.inputs[0], nodes: [mul, tanh, div] };
  }

  /** The match anchored at one Softmax, or undefined when the pattern around it differs. */
  match(softmax: NodeInfo, layer: number): (Rewrite & { withCache: boolean; cacheFound: boolean; mask: string }) | undefined {
    const axis = softmax.ints.get("axis")?.[0] ?? (this.opset >= 13 ? -1 : 1);
    if (softmax.opType !== "Softmax" || (axis !== -1 && axis !== 3)) return undefined;
    // Half-precision exports take the softmax in float32 (as transformers computes it): a Cast on each side.
    const castIn = this.index.made(softmax.inputs[0], "Cast");
    if (castIn && !this.index.only(castIn.outputs[0])) return undefined;
    const add = this.index.producer.get(castIn ? castIn.inputs[0] : softmax.inputs[0]);
    if (add?.opType !== "Add" || !this.index.only(add.outputs[0])) return undefined;
    const scaledAt = add.inputs.findIndex((i) => ["Div", "Mul"].includes(this.index.producer.get(i)?.opType ?? ""));
    if (scaledAt < 0) return undefined;
    const mask = add.inputs[1 - scaledAt];
    // Soft-capped scores (only GroupQueryAttention, over a fixed capacity, takes a cap).
    const capped = this.fixedCapacity ? this.softcap(add.inputs[scaledAt]) : undefined;
    if (capped && !this.index.only(capped.nodes[0].outputs[0])) return undefined;
    const scaled = this.index.producer.get(capped ? capped.inner : add.inputs[scaledAt]);
    if (!scaled || !["Div", "Mul"].includes(scaled.opType) || !this.index.only(scaled.outputs[0])) return undefined;
    const factor = this.index.scalar(scaled.inputs[1]);
    const scores = this.index.producer.get(scaled.inputs[0]);
    if (factor === undefined || scores?.opType !== "MatMul" || !this.index.only(scores.outputs[0])) return undefined;
    const scale = scaled.opType === "Div" ? 1 / factor : factor;
    const keysT = this.index.producer.get(scores.inputs[1]);
    if (!keysT || !isPerm(keysT, "0,1,3,2") || !this.index.only(keysT.outputs[0])) return undefined;
    const afterSoftmax = this.index.only(softmax.outputs[0]);
    const castOut = castIn && afterSoftmax?.opType === "Cast" ? afterSoftmax : undefined;
    if (castIn && !castOut) return undefined;
    const probs = castOut ?? softmax;
    const weighted = castOut ? this.index.only(castOut.outputs[0]) : afterSoftmax;
    if (weighted?.opType !== "MatMul" || weighted.inputs[0] !== probs.outputs[0]) return undefined;
    // With the cache: the new keys and values concatenated onto the past ones right there, with as
    // many heads as the queries. Else (grouped-query attention, whose cache is widened to the query
    // heads first) the keys and values as attention reads them, whole.
    // A grouped-query cache is found behind its widening; only GroupQueryAttention (fixed capacity)
    // reads it so, the plain fusion's MultiHeadAttention needs as many key as query heads.
    const grouped = this.numKvHeads !== this.numHeads;
    const widened = grouped ? [this.unwiden(keysT.inputs[0]), this.unwiden(weighted.inputs[1])] : [];
    const [keysIn, valuesIn] = grouped ? widened.map((w) => w?.narrow) : [keysT.inputs[0], weighted.inputs[1]];
    const [keys, values] = [keysIn && this.cacheConcat(keysIn), valuesIn && this.cacheConcat(valuesIn)];
    const cacheFound = !!keys && !!values;
    const withCache = cacheFound && (!grouped || this.fixedCapacity);

    const prefix = `smc_mha${layer}`;
    const newNodes: Uint8Array[] = [];
    const q = this.toBsd(scores.inputs[0], `${prefix}/q`, newNodes);
    // The heads merged back as the exporter does it next (Transpose, then Reshape to 3-D) are the
    // fused node's own output; anything else gets the (batch, heads, sequence, headDim) tensor back.
    const back = this.index.only(weighted.outputs[0]);
    const merge = back && isPerm(back, "0,2,1,3") ? this.index.only(back.outputs[0]) : undefined;
    const merged = merge?.opType === "Reshape" && this.mergesHeads(merge.inputs[1]) ? merge : undefined;
    const output = merged ? merged.outputs[0] : `${prefix}/out`;
    const attrs = { num_heads: this.numHeads, scale: { float: scale } };
    if (withCache && keys && values) {
      const k = this.toBsd(keys[1], `${prefix}/k`, newNodes, this.numKvHeads);
      const v = this.toBsd(values[1], `${prefix}/v`, newNodes, this.numKvHeads);
      const outputs = [output, keysIn!, valuesIn!];
      if (this.fixedCapacity) {
        const gqa: Record<string, Attr> = { ...attrs, kv_num_heads: this.numKvHeads };
        if (this.windows?.sliding[layer]) gqa.local_window_size = this.windows.size;
        if (capped) gqa.softcap = { float: capped.cap };
        newNodes.push(
          node(
            "GroupQueryAttention",
            [q, k, v, keys[0], values[0], SEQLENS_K, TOTAL_SEQUENCE_LENGTH],
            outputs,
            `${prefix}/GroupQueryAttention`,
            gqa,
            MS_DOMAIN,
          ),
        );
      } else {
        newNodes.push(
          node(
            "MultiHeadAttention",
            [q, k, v, "", "", mask, keys[0], values[0]],
            outputs,
            `${prefix}/MultiHeadAttention`,
            attrs,
            MS_DOMAIN,
          ),
        );
      }
    } else {
      // Keys and values (batch, heads, length, headDim) are taken as they are; the cache stays the exporter's.
      newNodes.push(
        node(
          "MultiHeadAttention",
          [q, keysT.inputs[0], weighted.inputs[1], "", "", mask],
          [output],
          `${prefix}/MultiHeadAttention`,
          attrs,
          MS_DOMAIN,
        ),
      );
    }
    if (!merged) {
      const shape = `${prefix}/bsnh_shape`;
      newNodes.push(constant(shape, "int64", [4], [0, 0, this.numHeads, this.headDim]));
      newNodes.push(node("Reshape", [output, shape], [`${prefix}/bsnh`], `${prefix}/bsnh`));
      newNodes.push(node("Transpose", [`${prefix}/bsnh`], [weighted.outputs[0]], `${prefix}/bnsh`, { perm: { ints: [0, 2, 1, 3] } }));
    }
    const concats = withCache ? [this.index.producer.get(keysIn!)!, this.index.producer.get(valuesIn!)!] : [];
    const widening = withCache ? widened.flatMap((w) => w?.nodes ?? []) : [];
    // A cap that did not go into GroupQueryAttention (no cache found here) is not fused at all.
    if (capped && !(withCache && this.fixedCapacity)) return undefined;
    const casts = castIn ? [castIn, castOut!] : [];
    const caps = capped?.nodes ?? [];
    const replaced = [
      add,
      ...caps,
      scaled,
      scores,
      keysT,
      ...casts,
      softmax,
      weighted,
      ...concats,
      ...widening,
      ...(merged ? [back!, merged] : []),
    ];
    return { replaced, anchor: merged ?? weighted, newNodes, withCache, cacheFound, mask };
  }

  /** Whether a Reshape's target shape is [·, ·, heads × headDim] (or [·, ·, −1]). */
  private mergesHeads(shapeName: string): boolean {
    const width = (v: number[] | undefined) =>
      v !== undefined && (v[v.length - 1] === this.numHeads * this.headDim || v[v.length - 1] === -1);
    const fixed = this.constants.get(shapeName);
    if (fixed) return fixed.length === 3 && width(fixed);
    const c = this.index.producer.get(shapeName);
    return (
      c?.opType === "Concat" &&
      c.inputs.length === 3 &&
      this.constants.get(c.inputs[2])?.length === 1 &&
      width(this.constants.get(c.inputs[2]))
    );
  }
}

/** Whether `name` is computed (within 512 tensors back: a mask's arithmetic) from the scalar constant ±`value`. */
function readsConstant(index: GraphIndex, name: string, value: number): boolean {
  for (const t of index.upstream(name, 512)) {
    const v = index.graph.constants.get(t);
    if (v?.length === 1 && Math.abs(v[0]) === value) return true;
  }
  return false;
}

/**
 * Whether the layers' masks agree with the config's windows: the sliding layers all read one mask
 * tensor, made with the window's size as a constant (transformers writes `key > query − window`), and
 * the others all another. The config says which layers slide (transformers' rule for the model); the
 * export's masks must say the same, or a window would go where the export has none.
 */
function masksAgree(index: GraphIndex, masks: string[], windows: AttentionWindows): boolean {
  if (masks.length !== windows.sliding.length) return false;
  const of = (sliding: boolean) => [...new Set(masks.filter((_, i) => windows.sliding[i] === sliding))];
  const [local, global] = [of(true), of(false)];
  if (local.length > 1 || global.length > 1) return false;
  if (local.length && global.length && local[0] === global[0]) return false;
  return !local.length || readsConstant(index, local[0], windows.size);
}

/**
 * The graph with every matching attention fused (`fused`: how many), and the nodes nothing reads any
 * more dropped. With `fixedCapacity` asked for, the cache is of fixed capacity (`fixedCapacity`: true)
 * only when every layer (every past key input) matched with its cache and nothing else reads the
 * attention mask; otherwise the fusion is the plain one. `windows`: the model's sliding window, which
 * a fixed capacity then carries where the masks agree; without it every layer is taken to attend to
 * every earlier token, as the config says (the caller leaves out models whose config says otherwise).
 */
export function fuseAttention(
  graph: GraphInfo,
  heads: Heads,
  opset: number,
  fixedCapacity = false,
  windows?: AttentionWindows,
): { graph: GraphInfo; fused: number; fixedCapacity: boolean } {
  type Match = NonNullable<ReturnType<AttentionFuser["match"]>>;
  const rewrites = (fixed: boolean) => {
    const fuser = new AttentionFuser(graph, heads.numHeads, heads.numKvHeads, heads.headDim, opset, fixed, windows);
    return graph.nodes
      .filter((n) => n.opType === "Softmax")
      .map((s, layer) => fuser.match(s, layer))
      .filter((m): m is Match => !!m);
  };
  const layers = graph.inputs.filter((i) => /^past_key_values\.\d+\.key$/.test(i)).length;
  if (fixedCapacity && layers > 0) {
    const fixedMatches = rewrites(true);
    const complete = fixedMatches.length === layers && fixedMatches.every((r) => r.cacheFound && r.withCache);
    const windowsRight =
      !windows ||
      masksAgree(
        new GraphIndex(graph),
        fixedMatches.map((r) => r.mask),
        windows,
      );
    if (complete && windowsRight) {
      const fixed = applyRewrites(graph, fixedMatches);
      if (!fixed.nodes.some((n) => n.inputs.includes("attention_mask"))) return { graph: fixed, fused: layers, fixedCapacity: true };
    }
  }
  const plain = rewrites(false);
  return { graph: applyRewrites(graph, plain), fused: plain.length, fixedCapacity: false };
}
