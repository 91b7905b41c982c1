/**
 * Local rewrites of an ONNX graph: a pass finds patterns and says which nodes a new piece replaces;
 * applying the rewrites puts the new nodes where the anchor was and drops every node nothing reads
 * any more (what fed only the replaced pattern, shape arithmetic included).
 */
import { addConstant, GraphInfo, NodeInfo, readNode } from "./graphRead";

export interface Rewrite {
  /** Nodes the new ones replace (the rest of a pattern goes when nothing reads it). */
  replaced: NodeInfo[];
  /** A replaced node whose place the new nodes take: after all their inputs are made. */
  anchor: NodeInfo;
  newNodes: Uint8Array[];
}

/** A decoder's heads: of the queries, of the keys and values, and their width. */
export interface Heads {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

export const isPerm = (n: NodeInfo | undefined, perm: string) => n?.opType === "Transpose" && (n.ints.get("perm") ?? []).join(",") === perm;

/** Who makes and who reads each tensor, and the small questions patterns ask of them. */
export class GraphIndex {
  readonly producer = new Map<string, NodeInfo>();
  private readonly consumers = new Map<string, NodeInfo[]>();
  private readonly graphInputs: Set<string>;

  constructor(readonly graph: GraphInfo) {
    this.graphInputs = new Set(graph.inputs);
    for (const n of graph.nodes) {
      for (const o of n.outputs) this.producer.set(o, n);
      for (const i of n.inputs) {
        if (!i) continue;
        const list = this.consumers.get(i) ?? [];
        if (!list.includes(n)) list.push(n);
        this.consumers.set(i, list);
      }
    }
  }

  /** The node that makes `name` if it has that op type. */
  made(name: string, opType: string): NodeInfo | undefined {
    const n = this.producer.get(name);
    return n?.opType === opType ? n : undefined;
  }

  /** The one node that reads `name`, when nothing else (no other node, no graph output) does. */
  only(name: string): NodeInfo | undefined {
    const list = this.consumers.get(name) ?? [];
    return list.length === 1 && !this.graph.outputs.has(name) ? list[0] : undefined;
  }

  /** What nodes of these types pass on to `name` (followed back through any number of them). */
  through(name: string, ...opTypes: string[]): string {
    for (let n = this.producer.get(name); n && opTypes.includes(n.opType); n = this.producer.get(name)) name = n.inputs[0];
    return name;
  }

  /**
   * The last two entries of a Reshape's 4-entry target shape, [heads, headDim] when it splits the
   * heads: from a constant, or from the constant last two parts of a Concat of four.
   */
  headSplit(shapeName: string): [number, number] | undefined {
    const fixed = this.graph.constants.get(shapeName);
    if (fixed) return fixed.length === 4 ? [fixed[2], fixed[3]] : undefined;
    const c = this.made(shapeName, "Concat");
    const [n, h] = c?.inputs.length === 4 ? [this.graph.constants.get(c.inputs[2]), this.graph.constants.get(c.inputs[3])] : [];
    return n?.length === 1 && h?.length === 1 ? [n[0], h[0]] : undefined;
  }

  /** `name` and the tensors it is computed from, each once, walking back through their producers (at most `limit`). */
  *upstream(name: string, limit = Infinity): Generator<string> {
    const seen = new Set<string>();
    const pending = [name];
    while (pending.length && seen.size < limit) {
      const t = pending.pop()!;
      if (!t || seen.has(t)) continue;
      seen.add(t);
      yield t;
      pending.push(...(this.producer.get(t)?.inputs ?? []));
    }
  }

  /** The nodes that read `name`. */
  readers(name: string): readonly NodeInfo[] {
    return this.consumers.get(name) ?? [];
  }

  /** Whether anything besides `node` reads `name` (a graph output counts). */
  readElsewhere(name: string, node: NodeInfo): boolean {
    return this.graph.outputs.has(name) || (this.consumers.get(name) ?? []).some((n) => n !== node);
  }

  isGraphInput(name: string): boolean {
    return this.graphInputs.has(name);
  }

  /** A weight's dimensions: an initializer's, or one an Identity passes on (exporters share equal weights so). */
  weightDims(name: string): number[] | undefined {
    const identity = this.made(name, "Identity");
    return this.graph.initializers.get(identity ? identity.inputs[0] : name);
  }

  isWeight(name: string): boolean {
    return this.graph.initializers.has(name) || this.producer.get(name)?.opType === "Constant";
  }

  /** A finite, nonzero scalar constant's value. */
  scalar(name: string): number | undefined {
    const v = this.graph.constants.get(name);
    return v && v.length === 1 && Number.isFinite(v[0]) && v[0] !== 0 ? v[0] : undefined;
  }
}

/** The graph with the rewrites applied (nodes re-read), or the same graph when there are none. */
export function applyRewrites(graph: GraphInfo, rewrites: Rewrite[]): GraphInfo {
  if (!rewrites.length) return graph;
  // Two patterns that claim one node cannot both be applied: the first found wins.
  const replaced = new Set<NodeInfo>();
  const inserted = new Map<NodeInfo, NodeInfo[]>();
  for (const r of rewrites) {
    if (r.replaced.some((n) => replaced.has(n))) continue;
    for (const n of r.replaced) replaced.add(n);
    inserted.set(r.anchor, r.newNodes.map(readNode));
  }
  const nodes = graph.nodes.flatMap((n) => inserted.get(n) ?? (replaced.has(n) ? [] : [n]));
  // Walk backwards: a node stays when a graph output or a node that stays reads one of its outputs.
  const needed = new Set<string>(graph.outputs.keys());
  const live: NodeInfo[] = [];
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    if (!n.outputs.some((o) => needed.has(o))) continue;
    live.push(n);
    for (const input of n.inputs) needed.add(input);
  }
  const result = { ...graph, nodes: live.reverse(), constants: new Map(graph.constants) };
  for (const n of result.nodes) addConstant(result, n);
  return result;
}
