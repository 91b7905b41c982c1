/**
 * A sampling head added to the SMC-ready graph: from the last position's logits it draws one token
 * per row from softmax(logits / T) by inverting the CDF with a uniform the caller passes in, and
 * returns the token with log p (T = 1), log q (at T) and the row's largest log p. Where the model
 * runs on a GPU the K × vocab scan then happens there too; on the CPU it runs vectorised instead of
 * in JavaScript (at a 50k vocabulary that scan cost twice the forward pass).
 *
 * Ops whose signature is the same from opset 13 on (ReduceSum takes axes as an input), but ReduceMax,
 * written for the model's opset.
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
/**
 * The columns of a packed draw: the token (exact as a float32 below 2^24); the parts of its log p and
 * log q that unpackDraws subtracts (the graph would spend a kernel on each difference, and a GPU's
 * step is bound by its kernels' launches): the token's logit less the row's largest, log Σ exp of
 * those, its tempered (twisted) counterpart and the tempered weights' sum; then log ψ of the token
 * (twisted draws only).
 */
export const DRAW_COLUMNS = { token: 0, shifted: 1, logSum: 2, tempered: 3, total: 4, logPsi: 5 } as const;
export const SAMPLING_MIN_OPSET = 13;

/**
 * How a draw's inverse CDF is laid out: in the fewest kernels, for a GPU, where each kernel costs tens
 * of microseconds to launch whatever its size; or with the least work, for the CPU.
 */
export type DrawLayout = "fewest-kernels" | "least-work";

/** Graph fields (nodes, inputs, outputs) to append; they read `logits` [batch, seq, vocab]. */
export function samplingHead(vocab: number, opset: number, layout: DrawLayout = "least-work"): Uint8Array[] {
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
    ...inverseCdfNodes(
      p,
      vocab,
      { rows: p("last"), uniform: SAMPLE_UNIFORM, inverseTemperature: SAMPLE_INVERSE_TEMPERATURE },
      SAMPLE_DRAWS,
      opset,
      layout,
    ),
  ];
  return [
    ...nodes.map((n) => bytesField(GRAPH.node, n)),
    bytesField(GRAPH.input, tensorValueInfo(SAMPLE_UNIFORM, DTYPE.float, ["batch_size"])),
    bytesField(GRAPH.input, tensorValueInfo(SAMPLE_INVERSE_TEMPERATURE, DTYPE.float, [1])),
    bytesField(GRAPH.output, tensorValueInfo(SAMPLE_DRAWS, DTYPE.float, ["batch_size", 5])),
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
 * `output` [rows, 5 or 6] (DRAW_COLUMNS): the token and what its log p (at T = 1) and log q and the
 * row's largest log p are made of, and with `logPsi` log ψ of the token.
 */
export function inverseCdfNodes(
  p: (s: string) => string,
  vocab: number,
  input: DrawInputs,
  output: string,
  opset: number,
  layout: DrawLayout,
): Uint8Array[] {
  const nodes = [
    constant(p("start"), "int64", [1], [-1]),
    constant(p("end"), "int64", [1], [2 ** 53]),
    constant(p("axis1"), "int64", [1], [1]),
    constant(p("column"), "int64", [2], [-1, 1]),
    // log p = (x − max) − log Σ exp(x − max); tempered: (x − max)/T, whose exponentials feed the CDF
    // unnormalised. (Not LogSoftmax: WebGPU has no kernel for it and would copy the rows to the CPU.)
    // ReduceMax, not ArgMax and a gather: onnxruntime's WebGPU ArgMax took a third of a K = 16 step's
    // GPU time at a 50k vocabulary (H100).
    ...rowMax(input.rows, p("max"), opset),
    node("Sub", [input.rows, p("max")], [p("shifted")], p("shifted")),
    node("Exp", [p("shifted")], [p("e")], p("e")),
    node("ReduceSum", [p("e"), p("axis1")], [p("sum")], p("sum"), { keepdims: 1 }),
    node("Log", [p("sum")], [p("log_sum")], p("log_sum")),
  ];
  if (input.logPsi) {
    // Twisted: (x − max)/T + log ψ, shifted again so its largest entry is 0 (ψ may be small everywhere).
    nodes.push(
      node("Mul", [p("shifted"), input.inverseTemperature], [p("scaled")], p("scaled")),
      node("Add", [p("scaled"), input.logPsi], [p("twisted")], p("twisted")),
      ...rowMax(p("twisted"), p("twisted_max"), opset),
      node("Sub", [p("twisted"), p("twisted_max")], [p("tempered")], p("tempered")),
    );
  } else {
    nodes.push(node("Mul", [p("shifted"), input.inverseTemperature], [p("tempered")], p("tempered")));
  }
  const inverseCdf = layout === "fewest-kernels" ? countedInverseCdf : pickedInverseCdf;
  nodes.push(node("Exp", [p("tempered")], [p("q")], p("q")), ...inverseCdf(p, vocab, p("q"), input.uniform));
  nodes.push(
    // log p(token) = shifted(token) − log Σ exp(shifted), and log q(token) = tempered(token) − log of
    // the CDF's last entry: the token's entries gathered here, the differences taken by unpackDraws.
    node("GatherElements", [p("shifted"), p("token")], [p("shifted_token")], p("shifted_token"), { axis: 1 }),
    node("GatherElements", [p("tempered"), p("token")], [p("tempered_token")], p("tempered_token"), { axis: 1 }),
  );
  const columns = [p("token_f"), p("shifted_token"), p("log_sum"), p("tempered_token"), p("total")];
  if (input.logPsi) {
    nodes.push(node("GatherElements", [input.logPsi, p("token")], [p("log_psi_token")], p("log_psi_token"), { axis: 1 }));
    columns.push(p("log_psi_token"));
  }
  nodes.push(node("Concat", columns, [output], p("draws"), { axis: 1 }));
  return nodes;
}

/** Each row's largest entry [rows, 1]; ReduceMax takes its axes as an input from opset 18 on. */
function rowMax(rows: string, out: string, opset: number): Uint8Array[] {
  if (opset < 18) return [node("ReduceMax", [rows], [out], out, { axes: { ints: [1] }, keepdims: 1 })];
  return [constant(`${out}_axes`, "int64", [1], [1]), node("ReduceMax", [rows, `${out}_axes`], [out], out, { keepdims: 1 })];
}

/**
 * The token where the CDF of q [rows, vocab] (unnormalised) first exceeds u·Σq, into `token` [rows, 1]
 * (int64) and `token_f` (float), with `total` = Σq [rows, 1]: the number of CDF entries at or below
 * u·Σq (so entries of probability 0 are passed over).
 *
 * The CDF is built in blocks of `width` entries, each block's own running sum plus the sum of the
 * blocks before it. A CDF over the whole row in one CumSum costs vocab² on WebGPU (onnxruntime's kernel
 * sums each entry's prefix anew); blocks cost vocab·width/2 + blocks²/2, least near width = ∛(2·vocab)
 * (64 at GPT-2's vocabulary: 2M additions a row, against 1.3G). Counting over the whole row, rather
 * than picking a block and then a token in it, takes 12 kernels instead of 28: on a GPU each costs
 * tens of microseconds to launch, while the extra passes over the row cost the CPU a third more per
 * step (a 50k vocabulary, K = 16: 10.1–10.8 against 7.6–8.4 ms), so the CPU keeps pickedInverseCdf.
 * A block's last entry is the next block's prefix exactly (both are the same running sum), so the CDF
 * never steps down at a block's edge.
 */
function countedInverseCdf(p: (s: string) => string, vocab: number, q: string, uniform: string): Uint8Array[] {
  const width = Math.max(2, 2 ** Math.round(Math.log2(Math.cbrt(2 * vocab))));
  const blocks = Math.ceil(vocab / width);
  return [
    constant(p("pads"), "int64", [4], [0, 0, 0, blocks * width - vocab]),
    constant(p("by_block"), "int64", [3], [0, blocks, width]),
    constant(p("flat"), "int64", [2], [0, -1]),
    constant(p("within_axis"), "int64", [], [2]),
    constant(p("block_axis"), "int64", [], [1]),
    constant(p("axis2"), "int64", [1], [2]),
    constant(p("last_token"), "float", [], [vocab - 1]),
    node("Pad", [q, p("pads")], [p("q_padded")], p("q_padded")),
    node("Reshape", [p("q_padded"), p("by_block")], [p("q_blocks")], p("q_blocks")),
    node("CumSum", [p("q_blocks"), p("within_axis")], [p("within")], p("within")),
    node("Slice", [p("within"), p("start"), p("end"), p("axis2")], [p("block_sums")], p("block_sums")),
    node("CumSum", [p("block_sums"), p("block_axis")], [p("before")], p("before"), { exclusive: 1 }),
    node("Add", [p("before"), p("within")], [p("cdf_blocks")], p("cdf_blocks")),
    node("Reshape", [p("cdf_blocks"), p("flat")], [p("cdf")], p("cdf")),
    node("Slice", [p("cdf"), p("start"), p("end"), p("axis1")], [p("total")], p("total")),
    node("Reshape", [uniform, p("column")], [p("u")], p("u")),
    node("Mul", [p("u"), p("total")], [p("threshold")], p("threshold")),
    node("LessOrEqual", [p("cdf"), p("threshold")], [p("below")], p("below")),
    node("Cast", [p("below")], [p("below_f")], p("below_f"), { to: DTYPE.float }),
    node("ReduceSum", [p("below_f"), p("axis1")], [p("count")], p("count"), { keepdims: 1 }),
    node("Min", [p("count"), p("last_token")], [p("token_f")], p("clamp")),
    node("Cast", [p("token_f")], [p("token")], p("token"), { to: DTYPE.int64 }),
  ];
}

/**
 * The inverse CDF with the least work (the CPU's layout), into the same tensors as countedInverseCdf:
 * in two levels, blocks of about √vocab entries, the block sums' CDF picks the block, the block's own
 * CDF the token; about 2·vocab additions a row. 28 kernels.
 */
function pickedInverseCdf(p: (s: string) => string, vocab: number, q: string, uniform: string): Uint8Array[] {
  const width = 2 ** Math.ceil(Math.log2(Math.sqrt(vocab)));
  const blocks = Math.ceil(vocab / width);
  // The token is the number of CDF entries at or below u·total: the first entry above it (so entries
  // of probability 0 are passed over); block and position are found the same way.
  const countAtOrBelow = (cdf: string, threshold: string, most: number, out: string) => [
    node("LessOrEqual", [cdf, threshold], [p(`${out}_below`)], p(`${out}_below`)),
    node("Cast", [p(`${out}_below`)], [p(`${out}_below_f`)], p(`${out}_below_f`), { to: DTYPE.float }),
    node("ReduceSum", [p(`${out}_below_f`), p("axis1")], [p(`${out}_count`)], p(`${out}_count`), { keepdims: 1 }),
    constant(p(`${out}_most`), "float", [], [most]),
    node("Min", [p(`${out}_count`), p(`${out}_most`)], [p(out)], p(`${out}_clamp`)),
  ];
  return [
    constant(p("pads"), "int64", [4], [0, 0, 0, blocks * width - vocab]),
    constant(p("by_block"), "int64", [3], [0, blocks, width]),
    constant(p("axis2"), "int64", [1], [2]),
    constant(p("cumsum_axis"), "int64", [], [1]),
    constant(p("as_blocks3"), "int64", [3], [0, blocks, 1]),
    constant(
      p("block_ids"),
      "float",
      [1, blocks],
      Array.from({ length: blocks }, (_, b) => b),
    ),
    constant(p("width"), "float", [], [width]),
    constant(p("last_token"), "float", [], [vocab - 1]),
    node("Pad", [q, p("pads")], [p("q_padded")], p("q_padded")),
    node("Reshape", [p("q_padded"), p("by_block")], [p("q_blocks")], p("q_blocks")),
    node("ReduceSum", [p("q_blocks"), p("axis2")], [p("block_sums")], p("block_sums"), { keepdims: 0 }),
    node("CumSum", [p("block_sums"), p("cumsum_axis")], [p("block_cdf")], p("block_cdf")),
    node("Slice", [p("block_cdf"), p("start"), p("end"), p("axis1")], [p("total")], p("total")),
    node("Reshape", [uniform, p("column")], [p("u")], p("u")),
    node("Mul", [p("u"), p("total")], [p("threshold")], p("threshold")),
    ...countAtOrBelow(p("block_cdf"), p("threshold"), blocks - 1, "block_f"),
    // The mass before the chosen block, and the block's entries [rows, width], picked by a one-hot
    // product (exact: one factor 1, the rest 0). An int64 index here would be computed on the CPU:
    // onnxruntime places small integer tensors there, and the copy would stall the GPU mid-pass.
    node("Equal", [p("block_ids"), p("block_f")], [p("is_block")], p("is_block")),
    node("Cast", [p("is_block")], [p("one_hot")], p("one_hot"), { to: DTYPE.float }),
    node("Sub", [p("block_cdf"), p("block_sums")], [p("before_blocks")], p("before_blocks")),
    node("Mul", [p("before_blocks"), p("one_hot")], [p("before_picked")], p("before_picked")),
    node("ReduceSum", [p("before_picked"), p("axis1")], [p("before")], p("before"), { keepdims: 1 }),
    node("Reshape", [p("one_hot"), p("as_blocks3")], [p("one_hot3")], p("one_hot3")),
    node("Mul", [p("q_blocks"), p("one_hot3")], [p("chosen_picked")], p("chosen_picked")),
    node("ReduceSum", [p("chosen_picked"), p("axis1")], [p("chosen")], p("chosen"), { keepdims: 0 }),
    node("CumSum", [p("chosen"), p("cumsum_axis")], [p("chosen_cdf")], p("chosen_cdf")),
    node("Add", [p("before"), p("chosen_cdf")], [p("cdf")], p("cdf")),
    ...countAtOrBelow(p("cdf"), p("threshold"), width - 1, "within"),
    node("Mul", [p("block_f"), p("width")], [p("block_start")], p("block_start")),
    node("Add", [p("block_start"), p("within")], [p("position")], p("position")),
    node("Min", [p("position"), p("last_token")], [p("token_f")], p("clamp")),
    node("Cast", [p("token_f")], [p("token")], p("token"), { to: DTYPE.int64 }),
  ];
}

/** The draws packed in `data` (rows × 5, or × 6 with log ψ), as RowDraws. */
export function unpackDraws(data: Float32Array, rows: number): RowDraws {
  const width = data.length / rows;
  if (rows && width !== 5 && width !== 6) throw new Error(`packed draws have ${width} columns, not 5 or 6`);
  const column = (f: (at: number) => number) => Float32Array.from({ length: rows }, (_, r) => f(r * width));
  const c = DRAW_COLUMNS;
  return {
    token: Int32Array.from(column((at) => data[at + c.token])),
    // A NaN logit makes the row's log Σ exp NaN, so log p shows it (the decoder checks it).
    logp: column((at) => data[at + c.shifted] - data[at + c.logSum]),
    logq: column((at) => data[at + c.tempered] - Math.log(data[at + c.total])),
    logpMax: column((at) => -data[at + c.logSum]),
    logPsi: width === 6 ? column((at) => data[at + c.logPsi]) : undefined,
  };
}
