/**
 * A sampling head added to the SMC-ready graph: from the last position's logits it draws one token
 * per row from softmax(logits / T) by inverting the CDF with a uniform the caller passes in, and
 * returns the token with log p (T = 1), log q (at T) and the row's largest log p. Where the model
 * runs on a GPU the K × vocab scan then happens there too; on the CPU it runs vectorised instead of
 * in JavaScript (at a 50k vocabulary that scan cost twice the forward pass).
 *
 * Only ops whose signature is the same from opset 13 on (ReduceSum takes axes as an input).
 */
import { constant, DTYPE, GRAPH, node, tensorValueInfo } from "./graphBuild";
import { bytesField } from "./protoWire";

export const SAMPLE_UNIFORM = "sample_uniform";
export const SAMPLE_INVERSE_TEMPERATURE = "sample_inverse_temperature";
export const SAMPLE_OUTPUTS = { token: "sample_token", logp: "sample_logp", logq: "sample_logq", logpMax: "sample_logp_max" } as const;
export const SAMPLING_MIN_OPSET = 13;

/** Graph fields (nodes, inputs, outputs) to append; they read `logits` [batch, seq, vocab]. */
export function samplingHead(vocab: number): Uint8Array[] {
  const p = (s: string) => `smc_sample/${s}`;
  const nodes = [
    constant(p("last_start"), "int64", [1], [-1]),
    constant(p("last_end"), "int64", [1], [2 ** 53]),
    constant(p("seq_axis"), "int64", [1], [1]),
    constant(p("rows_by_vocab"), "int64", [2], [0, -1]),
    // The last position, as float32 rows: [batch, vocab].
    node("Slice", ["logits", p("last_start"), p("last_end"), p("seq_axis")], [p("last3d")], p("slice")),
    node("Reshape", [p("last3d"), p("rows_by_vocab")], [p("last_raw")], p("rows")),
    node("Cast", [p("last_raw")], [p("last")], p("to_float"), { to: DTYPE.float }),
    ...inverseCdfNodes(p, vocab, { rows: p("last"), uniform: SAMPLE_UNIFORM, inverseTemperature: SAMPLE_INVERSE_TEMPERATURE }, SAMPLE_OUTPUTS),
  ];
  return [
    ...nodes.map((n) => bytesField(GRAPH.node, n)),
    bytesField(GRAPH.input, tensorValueInfo(SAMPLE_UNIFORM, DTYPE.float, ["batch_size"])),
    bytesField(GRAPH.input, tensorValueInfo(SAMPLE_INVERSE_TEMPERATURE, DTYPE.float, [1])),
    bytesField(GRAPH.output, tensorValueInfo(SAMPLE_OUTPUTS.token, DTYPE.int64, ["batch_size"])),
    ...[SAMPLE_OUTPUTS.logp, SAMPLE_OUTPUTS.logq, SAMPLE_OUTPUTS.logpMax].map((o) => bytesField(GRAPH.output, tensorValueInfo(o, DTYPE.float, ["batch_size"]))),
  ];
}

export interface DrawInputs {
  /** float32 logits [rows, vocab]. */
  rows: string;
  /** [rows]: each row's uniform in [0, 1). */
  uniform: string;
  /** [1]: 1 / T. */
  inverseTemperature: string;
  /** [rows, vocab], optional: log ψ added to the tempered log p (a twisted proposal q ∝ p^{1/T}·ψ). */
  logPsi?: string;
}

export interface DrawOutputs {
  token: string;
  logp: string;
  logq: string;
  logpMax: string;
  /** log ψ of the drawn token (with `logPsi` only). */
  logPsi?: string;
}

/**
 * One draw per row from softmax(log p / T + log ψ) by inverting the CDF at the row's uniform, with
 * log p (at T = 1) and log q of the token and the row's largest log p; outputs are [rows].
 */
export function inverseCdfNodes(p: (s: string) => string, vocab: number, input: DrawInputs, output: DrawOutputs): Uint8Array[] {
  const nodes = [
    constant(p("start"), "int64", [1], [-1]),
    constant(p("end"), "int64", [1], [2 ** 53]),
    constant(p("axis1"), "int64", [1], [1]),
    constant(p("column"), "int64", [2], [-1, 1]),
    constant(p("flat"), "int64", [1], [-1]),
    constant(p("cumsum_axis"), "int64", [], [1]),
    constant(p("last_token"), "float", [], [vocab - 1]),
    // log p = (x − max) − log Σ exp(x − max); tempered: (x − max)/T, whose exponentials feed the CDF
    // unnormalised. (Not LogSoftmax: WebGPU has no kernel for it and would copy the rows to the CPU.)
    node("ArgMax", [input.rows], [p("best")], p("best"), { axis: 1, keepdims: 1 }),
    node("GatherElements", [input.rows, p("best")], [p("max")], p("max"), { axis: 1 }),
    node("Sub", [input.rows, p("max")], [p("shifted")], p("shifted")),
    node("Exp", [p("shifted")], [p("e")], p("e")),
    node("ReduceSum", [p("e"), p("axis1")], [p("sum")], p("sum"), { keepdims: 1 }),
    node("Log", [p("sum")], [p("log_sum")], p("log_sum")),
    node("Sub", [p("shifted"), p("log_sum")], [p("logp")], p("logp")),
    node("Neg", [p("log_sum")], [p("logp_best")], p("logp_best")),
  ];
  if (input.logPsi) {
    // Twisted: (x − max)/T + log ψ, shifted again so its largest entry is 0 (ψ may be small everywhere).
    nodes.push(
      node("Mul", [p("shifted"), input.inverseTemperature], [p("scaled")], p("scaled")),
      node("Add", [p("scaled"), input.logPsi], [p("twisted")], p("twisted")),
      node("ArgMax", [p("twisted")], [p("twisted_best")], p("twisted_best"), { axis: 1, keepdims: 1 }),
      node("GatherElements", [p("twisted"), p("twisted_best")], [p("twisted_max")], p("twisted_max"), { axis: 1 }),
      node("Sub", [p("twisted"), p("twisted_max")], [p("tempered")], p("tempered")),
    );
  } else {
    nodes.push(node("Mul", [p("shifted"), input.inverseTemperature], [p("tempered")], p("tempered")));
  }
  nodes.push(
    node("Exp", [p("tempered")], [p("q")], p("q")),
    node("CumSum", [p("q"), p("cumsum_axis")], [p("cdf")], p("cdf")),
    // The token is the number of CDF entries at or below u·total: the first entry above it.
    node("Slice", [p("cdf"), p("start"), p("end"), p("axis1")], [p("total")], p("total")),
    node("Reshape", [input.uniform, p("column")], [p("u")], p("u")),
    node("Mul", [p("u"), p("total")], [p("threshold")], p("threshold")),
    node("LessOrEqual", [p("cdf"), p("threshold")], [p("below")], p("below")),
    node("Cast", [p("below")], [p("below_f")], p("below_f"), { to: DTYPE.float }),
    node("ReduceSum", [p("below_f"), p("axis1")], [p("count")], p("count"), { keepdims: 1 }),
    node("Min", [p("count"), p("last_token")], [p("token_f")], p("clamp")),
    node("Cast", [p("token_f")], [p("token")], p("token"), { to: DTYPE.int64 }),
    node("GatherElements", [p("logp"), p("token")], [p("logp_token")], p("logp_token"), { axis: 1 }),
    // log q(token) = tempered(token) − log Σ exp(tempered), the sum being the CDF's last entry.
    node("GatherElements", [p("tempered"), p("token")], [p("tempered_token")], p("tempered_token"), { axis: 1 }),
    node("Log", [p("total")], [p("log_total")], p("log_total")),
    node("Sub", [p("tempered_token"), p("log_total")], [p("logq_token")], p("logq_token")),
    node("Reshape", [p("token"), p("flat")], [output.token], p("out_token")),
    node("Reshape", [p("logp_token"), p("flat")], [output.logp], p("out_logp")),
    node("Reshape", [p("logq_token"), p("flat")], [output.logq], p("out_logq")),
    node("Reshape", [p("logp_best"), p("flat")], [output.logpMax], p("out_logp_max")),
  );
  if (input.logPsi && output.logPsi) {
    nodes.push(
      node("GatherElements", [input.logPsi, p("token")], [p("log_psi_token")], p("log_psi_token"), { axis: 1 }),
      node("Reshape", [p("log_psi_token"), p("flat")], [output.logPsi], p("out_log_psi")),
    );
  }
  return nodes;
}
