/**
 * A sampling head added to the SMC-ready graph: from the last position's logits it draws one token
 * per row from softmax(logits / T) by inverting the CDF with a uniform the caller passes in, and
 * returns the token with log p (T = 1), log q (at T) and the row's largest log p. Where the model
 * runs on a GPU the K × vocab scan then happens there too; on the CPU it runs vectorised instead of
 * in JavaScript (at a 50k vocabulary that scan cost twice the forward pass).
 *
 * Only ops whose signature is the same from opset 13 on (ReduceSum takes axes as an input).
 */
import { RowDraws } from "../causalLm";
import { constant, DTYPE, GRAPH, node, tensorValueInfo } from "./graphBuild";
import { bytesField } from "./protoWire";

export const SAMPLE_UNIFORM = "sample_uniform";
export const SAMPLE_INVERSE_TEMPERATURE = "sample_inverse_temperature";
/**
 * The head's one output, float [batch, DRAW_COLUMNS]: one row per draw, packed so a GPU returns it in
 * one download (each output copied back is a wait for the device).
 */
export const SAMPLE_DRAWS = "sample_draws";
/** The columns of a packed draw: the token (exact as a float32 below 2^24), log p, log q, the row's largest log p, and log ψ (twisted draws only). */
export const DRAW_COLUMNS = { token: 0, logp: 1, logq: 2, logpMax: 3, logPsi: 4 } as const;
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
    ...inverseCdfNodes(p, vocab, { rows: p("last"), uniform: SAMPLE_UNIFORM, inverseTemperature: SAMPLE_INVERSE_TEMPERATURE }, SAMPLE_DRAWS),
  ];
  return [
    ...nodes.map((n) => bytesField(GRAPH.node, n)),
    bytesField(GRAPH.input, tensorValueInfo(SAMPLE_UNIFORM, DTYPE.float, ["batch_size"])),
    bytesField(GRAPH.input, tensorValueInfo(SAMPLE_INVERSE_TEMPERATURE, DTYPE.float, [1])),
    bytesField(GRAPH.output, tensorValueInfo(SAMPLE_DRAWS, DTYPE.float, ["batch_size", 4])),
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

/**
 * One draw per row from softmax(log p / T + log ψ) by inverting the CDF at the row's uniform, into
 * `output` [rows, 4 or 5] (DRAW_COLUMNS): the token, log p (at T = 1) and log q of it, the row's
 * largest log p, and with `logPsi` log ψ of the token.
 */
export function inverseCdfNodes(p: (s: string) => string, vocab: number, input: DrawInputs, output: string): Uint8Array[] {
  const nodes = [
    constant(p("start"), "int64", [1], [-1]),
    constant(p("end"), "int64", [1], [2 ** 53]),
    constant(p("axis1"), "int64", [1], [1]),
    constant(p("column"), "int64", [2], [-1, 1]),
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
  );
  const columns = [p("token_f"), p("logp_token"), p("logq_token"), p("logp_best")];
  if (input.logPsi) {
    nodes.push(node("GatherElements", [input.logPsi, p("token")], [p("log_psi_token")], p("log_psi_token"), { axis: 1 }));
    columns.push(p("log_psi_token"));
  }
  nodes.push(node("Concat", columns, [output], p("draws"), { axis: 1 }));
  return nodes;
}

/** The draws packed in `data` (rows × 4, or × 5 with log ψ), as RowDraws. */
export function unpackDraws(data: Float32Array, rows: number): RowDraws {
  const width = data.length / rows;
  if (rows && width !== 4 && width !== 5) throw new Error(`packed draws have ${width} columns, not 4 or 5`);
  const column = (c: number) => Float32Array.from({ length: rows }, (_, r) => data[r * width + c]);
  return {
    token: Int32Array.from(column(DRAW_COLUMNS.token)),
    logp: column(DRAW_COLUMNS.logp),
    logq: column(DRAW_COLUMNS.logq),
    logpMax: column(DRAW_COLUMNS.logpMax),
    logPsi: width === 5 ? column(DRAW_COLUMNS.logPsi) : undefined,
  };
}
