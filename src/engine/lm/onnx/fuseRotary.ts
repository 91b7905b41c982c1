/**
 * Fuses rotary position embeddings as Llama-style exports write them (`t·cos + rotate_half(t)·sin`,
 * with `rotate_half(t) = [−t₂, t₁]` and cos, sin of position × the exporter's inverse frequencies)
 * into one onnxruntime `com.microsoft.RotaryEmbedding` node per query and key: one kernel instead of
 * seven. Why: on a GPU a decode step is bound by kernel launches (fuseAttention.ts).
 *
 * The node reads cos and sin from tables of `positions` rows, made here from the exporter's own
 * inverse frequencies (so scaled variants baked into them come along). It rotates the (batch,
 * sequence, heads × headDim) projection before the heads are split, so the attention fusion after it
 * takes its output as it is. Positions past the tables are refused at run time (onnxDecoder.ts).
 */
import { constant, DTYPE, MS_DOMAIN, node } from "./graphBuild";
import { GraphInfo, NodeInfo } from "./graphRead";
import { applyRewrites, GraphIndex, Heads, isPerm, Rewrite } from "./graphRewrite";

const POSITION_IDS = "position_ids";

class RotaryFuser {
  private readonly index: GraphIndex;
  /** The cos and sin tables made so far, by the inverse frequencies' tensor. */
  private readonly tables = new Map<string, [string, string]>();

  constructor(
    private readonly graph: GraphInfo,
    private readonly heads: Heads,
    private readonly positions: number,
  ) {
    this.index = new GraphIndex(graph);
  }

  /** What Casts and Unsqueezes pass on to `name`. */
  private through(name: string): string {
    return this.index.through(name, "Cast", "Unsqueeze");
  }

  private constant(name: string): number[] | undefined {
    return this.graph.constants.get(this.through(name));
  }

  /** Whether `name` is half of `t`'s last axis: the constant headDim/2, or Shape(t)[last] / 2. */
  private isHalf(name: string, t: string): boolean {
    const fixed = this.constant(name);
    if (fixed) return fixed.length === 1 && fixed[0] === this.heads.headDim / 2;
    const div = this.index.made(this.through(name), "Div");
    const dim = div && this.index.made(this.through(div.inputs[0]), "Gather");
    const shape = dim && this.index.made(dim.inputs[0], "Shape");
    const at = dim && this.constant(dim.inputs[1]);
    return !!shape && shape.inputs[0] === t && this.index.scalar(div.inputs[1]) === 2 && at?.length === 1 && (at[0] === 3 || at[0] === -1);
  }

  /** `Slice(t, starts, ends, axes = last, steps = 1)`, as [starts, ends]. */
  private lastAxisSlice(name: string, t: string): [string, string] | undefined {
    const s = this.index.made(name, "Slice");
    if (!s || s.inputs[0] !== t) return undefined;
    const axes = this.constant(s.inputs[3] ?? "");
    const steps = s.inputs[4] ? this.constant(s.inputs[4]) : [1];
    if (axes?.length !== 1 || (axes[0] !== 3 && axes[0] !== -1) || steps?.length !== 1 || steps[0] !== 1) return undefined;
    return [s.inputs[1], s.inputs[2]];
  }

  /** Whether `rot` is rotate_half(t): Concat(−t[..., half:], t[..., :half]) on the last axis. */
  private isRotateHalf(rot: string, t: string): boolean {
    const c = this.index.made(rot, "Concat");
    const axis = c?.ints.get("axis")?.[0];
    if (!c || c.inputs.length !== 2 || (axis !== 3 && axis !== -1)) return false;
    const neg = this.index.made(c.inputs[0], "Neg");
    const second = neg && this.lastAxisSlice(neg.inputs[0], t);
    const first = this.lastAxisSlice(c.inputs[1], t);
    const end = second && this.constant(second[1]);
    const start = first && this.constant(first[0]);
    return (
      !!second &&
      !!first &&
      this.isHalf(second[0], t) &&
      (end?.[0] ?? 0) >= this.heads.headDim &&
      start?.[0] === 0 &&
      this.isHalf(first[1], t)
    );
  }

  /** An Unsqueeze's axes (an attribute before opset 13, an input after). */
  private unsqueezeAxes(n: NodeInfo): number[] | undefined {
    return n.ints.get("axes") ?? this.constant(n.inputs[1] ?? "");
  }

  /**
   * The Cos or Sin behind a factor of the product, through Casts (to the activations' precision) and
   * the Unsqueeze at axis 1 that broadcasts it over the heads, which exporters put before the Cos
   * (older transformers) or after it (newer): the node, whether it was cast to half precision, and
   * whether the heads' Unsqueeze came after it.
   */
  private trig(name: string, op: "Cos" | "Sin"): { node: NodeInfo; half: boolean; unsqueezedAfter: boolean } | undefined {
    let half = false,
      unsqueezedAfter = false;
    for (let n = this.index.producer.get(name); n; n = this.index.producer.get(n.inputs[0])) {
      if (n.opType === op) return { node: n, half, unsqueezedAfter };
      if (n.opType === "Cast") half ||= n.ints.get("to")?.[0] === DTYPE.float16;
      else if (n.opType === "Unsqueeze" && !unsqueezedAfter && this.unsqueezeAxes(n)?.join() === "1") unsqueezedAfter = true;
      else return undefined;
    }
    return undefined;
  }

  /**
   * The inverse frequencies behind cos = Cos(Unsqueeze(Concat(f, f), [1])) (or Cos(Concat(f, f)) with
   * the Unsqueeze after it), f = positions × inverse frequencies, when they come straight from the
   * position_ids input.
   */
  private inverseFrequencies(cos: NodeInfo, sin: NodeInfo, unsqueezedAfter: boolean): string | undefined {
    if (cos.inputs[0] !== sin.inputs[0]) return undefined;
    const unsqueeze = unsqueezedAfter ? undefined : this.index.made(cos.inputs[0], "Unsqueeze");
    const axes = unsqueezedAfter ? [1] : unsqueeze && this.unsqueezeAxes(unsqueeze);
    const doubled = this.index.made(unsqueezedAfter ? cos.inputs[0] : (unsqueeze?.inputs[0] ?? ""), "Concat");
    if (axes?.length !== 1 || axes[0] !== 1 || !doubled || doubled.inputs.length !== 2 || doubled.inputs[0] !== doubled.inputs[1])
      return undefined;
    const f = this.index.made(doubled.inputs[0], "Mul");
    const at = f?.inputs.findIndex((i) => this.through(i) === POSITION_IDS) ?? -1;
    if (!f || at < 0) return undefined;
    const inverse = f.inputs[1 - at];
    const values = this.constant(inverse);
    return values?.length === this.heads.headDim / 2 && values.every(Number.isFinite) ? inverse : undefined;
  }

  /** The cos and sin tables for these inverse frequencies, made once (their nodes go to `out`). */
  private cosSin(inverse: string, type: "float" | "float16", out: Uint8Array[]): [string, string] {
    const key = `${inverse}|${type}`;
    const made = this.tables.get(key);
    if (made) return made;
    const freqs = this.constant(inverse)!;
    const half = freqs.length;
    const [cos, sin] = [new Array<number>(this.positions * half), new Array<number>(this.positions * half)];
    for (let p = 0; p < this.positions; p++) {
      for (let i = 0; i < half; i++) {
        // As the exporter's graph computes it: a float32 product, then its cosine and sine.
        const angle = Math.fround(p * Math.fround(freqs[i]));
        cos[p * half + i] = Math.cos(angle);
        sin[p * half + i] = Math.sin(angle);
      }
    }
    const names: [string, string] = [`smc_rotary/cos${this.tables.size}`, `smc_rotary/sin${this.tables.size}`];
    out.push(constant(names[0], type, [this.positions, half], cos), constant(names[1], type, [this.positions, half], sin));
    this.tables.set(key, names);
    return names;
  }

  match(roped: NodeInfo, n: number): Rewrite | undefined {
    if (roped.opType !== "Add" || roped.inputs.length !== 2) return undefined;
    const muls = roped.inputs.map((i) => this.index.made(i, "Mul"));
    if (muls.some((m) => !m || !this.index.only(m.outputs[0]))) return undefined;
    // One product with Cos(·), the other with Sin(·) of the same angles (cast to half precision in
    // an fp16 export, whose tables are then fp16 too).
    const factor = (m: NodeInfo, op: "Cos" | "Sin") => m.inputs.findIndex((i) => this.trig(i, op));
    const cosMul = muls.find((m) => factor(m!, "Cos") >= 0);
    const sinMul = muls.find((m) => m !== cosMul && factor(m!, "Sin") >= 0);
    if (!cosMul || !sinMul) return undefined;
    const cosAt = factor(cosMul, "Cos");
    const sinAt = factor(sinMul, "Sin");
    const [cosOf, sinOf] = [this.trig(cosMul.inputs[cosAt], "Cos")!, this.trig(sinMul.inputs[sinAt], "Sin")!];
    if (cosOf.half !== sinOf.half || cosOf.unsqueezedAfter !== sinOf.unsqueezedAfter) return undefined;
    const t = cosMul.inputs[1 - cosAt];
    const rot = sinMul.inputs[1 - sinAt];
    // t: the projection with its heads split, (batch, heads, sequence, headDim).
    const split = this.index.producer.get(t);
    const reshape = split && isPerm(split, "0,2,1,3") ? this.index.made(split.inputs[0], "Reshape") : undefined;
    const heads = reshape && this.headsOf(reshape.inputs[1]);
    if (!reshape || !heads || !this.isRotateHalf(rot, t)) return undefined;
    const inverse = this.inverseFrequencies(cosOf.node, sinOf.node, cosOf.unsqueezedAfter);
    if (!inverse) return undefined;
    const half = cosOf.half;

    const p = `smc_rotary${n}`;
    const newNodes: Uint8Array[] = [];
    const [cos, sin] = this.cosSin(inverse, half ? "float16" : "float", newNodes);
    newNodes.push(
      node(
        "RotaryEmbedding",
        [reshape.inputs[0], POSITION_IDS, cos, sin],
        [`${p}/bsd`],
        `${p}/RotaryEmbedding`,
        { num_heads: heads, interleaved: 0 },
        MS_DOMAIN,
      ),
      // Back to (batch, heads, sequence, headDim) for whatever reads it; the attention fusion reads
      // the (batch, sequence, width) tensor before these instead, and they go.
      constant(`${p}/bsnh_shape`, "int64", [4], [0, 0, heads, this.heads.headDim]),
      node("Reshape", [`${p}/bsd`, `${p}/bsnh_shape`], [`${p}/bsnh`], `${p}/bsnh`),
      node("Transpose", [`${p}/bsnh`], [roped.outputs[0]], `${p}/bnsh`, { perm: { ints: [0, 2, 1, 3] } }),
    );
    return { replaced: [roped, cosMul, sinMul], anchor: roped, newNodes };
  }

  /** The heads of a Reshape to (·, ·, heads, headDim): query or key/value heads. */
  private headsOf(shapeName: string): number | undefined {
    const [n, h] = this.index.headSplit(shapeName) ?? [];
    return h === this.heads.headDim && (n === this.heads.numHeads || n === this.heads.numKvHeads) ? n : undefined;
  }
}

/**
 * The graph with each rotary embedding made one RotaryEmbedding node (`fused`: how many), its tables
 * covering `positions` positions.
 */
export function fuseRotary(graph: GraphInfo, heads: Heads, positions: number): { graph: GraphInfo; fused: number } {
  if (!graph.inputs.includes(POSITION_IDS) || heads.headDim % 2) return { graph, fused: 0 };
  const fuser = new RotaryFuser(graph, heads, positions);
  const rewrites = graph.nodes.map((n, i) => fuser.match(n, i)).filter((r): r is Rewrite => !!r);
  return { graph: applyRewrites(graph, rewrites), fused: rewrites.length };
}
