/**
 * The low-rank token twist head as graph nodes: log ψ = log σ((h·U)·W + b) for a batch of hidden states,
 * its weights as initializers. Used by the twist's own session and by the draw graph that evaluates
 * the twist where the model runs. Only elementwise ops every execution provider has (no Softplus).
 */
import { TokenTwistWeights } from "../causalLm";
import { constant, GRAPH, initializer, node } from "./graphBuild";
import { bytesField } from "./protoWire";

/** Graph fields (nodes and initializers) computing `output` [rows, vocab] from `hidden` [rows, hiddenSize]. */
export function twistHeadFields(p: (s: string) => string, weights: TokenTwistWeights, hidden: string, output: string): Uint8Array[] {
  const { hiddenSize: H, rank: R, vocabSize: V } = weights;
  const nodes = [
    node("MatMul", [hidden, p("U")], [p("z")], p("z")),
    node("MatMul", [p("z"), p("W")], [p("zw")], p("zw")),
    node("Add", [p("zw"), p("b")], [p("x")], p("x")),
    // log σ(x) = min(x, 0) − log(1 + exp(−|x|)), with 2·min(x, 0) = x − |x|.
    constant(p("one"), "float", [], [1]),
    constant(p("half"), "float", [], [0.5]),
    node("Abs", [p("x")], [p("abs")], p("abs")),
    node("Neg", [p("abs")], [p("neg_abs")], p("neg_abs")),
    node("Exp", [p("neg_abs")], [p("e")], p("e")),
    node("Add", [p("e"), p("one")], [p("one_plus")], p("one_plus")),
    node("Log", [p("one_plus")], [p("softplus")], p("softplus")),
    node("Sub", [p("x"), p("abs")], [p("twice_min")], p("twice_min")),
    node("Mul", [p("twice_min"), p("half")], [p("min0")], p("min0")),
    node("Sub", [p("min0"), p("softplus")], [output], p("log_psi")),
  ];
  return [
    ...nodes.map((n) => bytesField(GRAPH.node, n)),
    bytesField(GRAPH.initializer, initializer(p("U"), [H, R], weights.U)),
    bytesField(GRAPH.initializer, initializer(p("W"), [R, V], weights.W)),
    bytesField(GRAPH.initializer, initializer(p("b"), [V], weights.b)),
  ];
}
