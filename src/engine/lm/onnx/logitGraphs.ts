/**
 * Small graphs that read a decoder's logits where they are. onnxruntime-node cannot download a GPU
 * output (its download is not implemented), so logits the decoder leaves on the device are fed to
 * these graphs, on the same device:
 * - the rows graph returns just the rows asked for, as float32 on the CPU;
 * - the draw graph draws tokens from chosen rows (a row may be drawn from more than once, e.g. for
 *   siblings after a resampling), optionally from the twisted proposal q ∝ p^{1/T}·ψ of a low-rank
 *   token twist evaluated there too, and returns only the draws.
 */
import { TokenTwistWeights } from "../causalLm";
import { constant, DTYPE, GRAPH, modelBytes, node, tensorValueInfo } from "./graphBuild";
import { bytesField } from "./protoWire";
import { DrawLayout, inverseCdfNodes } from "./samplingHead";
import { twistHeadFields } from "./twistHeadGraph";

export const ROWS_INPUT = { logits: "logits", rows: "rows", from: "from_position" } as const;
export const ROWS_OUTPUT = "row_logits";
/** The Slice start for the last position only (`from_position`); 0 takes every position. */
export const LAST_POSITION = -1;

export const DRAW_INPUT = {
  logits: "logits",
  rows: "rows",
  uniform: "uniform",
  inverseTemperature: "inverse_temperature",
  hidden: "hidden",
} as const;
/** float [draws, 5 or 6]: the packed draws (DRAW_COLUMNS). */
export const DRAW_OUTPUT = "draws";

const OPSET_VERSION = 13;

/** `input` [batch, seq, width] → positions from `from` → the rows asked for → [rows × positions, width] float32. */
function pickRows(p: (s: string) => string, input: string, from: string, out: string): Uint8Array[] {
  return [
    constant(p("end"), "int64", [1], [2 ** 53]),
    constant(p("seq_axis"), "int64", [1], [1]),
    node("Slice", [input, from, p("end"), p("seq_axis")], [p("positions")], p("positions")),
    node("Gather", [p("positions"), ROWS_INPUT.rows], [p("picked")], p("picked"), { axis: 0 }),
    node("Flatten", [p("picked")], [p("flat")], p("flat"), { axis: 2 }),
    node("Cast", [p("flat")], [out], p("to_float"), { to: DTYPE.float }),
  ];
}

const logitsInput = (elem: number) => tensorValueInfo(ROWS_INPUT.logits, elem, ["batch", "sequence", "vocab"]);

/** The rows graph for logits of element type `elem` (DTYPE.float or DTYPE.float16). */
export function logitRowsModel(elem: number): Uint8Array {
  const p = (s: string) => `logit_rows/${s}`;
  return modelBytes(
    "logit_rows",
    [
      ...pickRows(p, ROWS_INPUT.logits, ROWS_INPUT.from, ROWS_OUTPUT).map((n) => bytesField(GRAPH.node, n)),
      bytesField(GRAPH.input, logitsInput(elem)),
      bytesField(GRAPH.input, tensorValueInfo(ROWS_INPUT.rows, DTYPE.int64, ["rows"])),
      bytesField(GRAPH.input, tensorValueInfo(ROWS_INPUT.from, DTYPE.int64, [1])),
      bytesField(GRAPH.output, tensorValueInfo(ROWS_OUTPUT, DTYPE.float, ["rows_by_positions", "vocab"])),
    ],
    OPSET_VERSION,
  );
}

/**
 * The draw graph: one token per entry of `rows` from the last position's softmax(log p / T), or, with
 * a twist, from softmax(log p / T + log ψ) with log ψ = log σ((h·U)·W + b) of that row's hidden state
 * (the input `hidden` [batch, seq, hiddenSize], of the same element type as the logits).
 */
export function drawModel(elem: number, vocab: number, twist?: TokenTwistWeights, layout: DrawLayout = "least-work"): Uint8Array {
  const p = (s: string) => `draw/${s}`;
  const picked = [constant(p("last"), "int64", [1], [LAST_POSITION]), ...pickRows(p, ROWS_INPUT.logits, p("last"), p("rows"))];
  if (twist) picked.push(...pickRows((s) => p(`hidden/${s}`), DRAW_INPUT.hidden, p("last"), p("hidden_rows")));
  if (twist && twist.vocabSize !== vocab) throw new RangeError(`the twist has ${twist.vocabSize} tokens, the model ${vocab}`);
  const logPsi = twist ? p("log_psi") : undefined;
  const draws = inverseCdfNodes(
    (s) => p(`cdf/${s}`),
    vocab,
    { rows: p("rows"), uniform: DRAW_INPUT.uniform, inverseTemperature: DRAW_INPUT.inverseTemperature, logPsi },
    DRAW_OUTPUT,
    OPSET_VERSION,
    layout,
  );
  // In topological order: the rows, the twist's log ψ, then the draws.
  const body = [
    ...picked.map((n) => bytesField(GRAPH.node, n)),
    ...(twist ? twistHeadFields((s) => p(`twist/${s}`), twist, p("hidden_rows"), logPsi!) : []),
    ...draws.map((n) => bytesField(GRAPH.node, n)),
  ];
  if (twist) body.push(bytesField(GRAPH.input, tensorValueInfo(DRAW_INPUT.hidden, elem, ["batch", "sequence", twist.hiddenSize])));
  return modelBytes(
    "draw",
    [
      ...body,
      bytesField(GRAPH.input, logitsInput(elem)),
      bytesField(GRAPH.input, tensorValueInfo(DRAW_INPUT.rows, DTYPE.int64, ["draws"])),
      bytesField(GRAPH.input, tensorValueInfo(DRAW_INPUT.uniform, DTYPE.float, ["draws"])),
      bytesField(GRAPH.input, tensorValueInfo(DRAW_INPUT.inverseTemperature, DTYPE.float, [1])),
      bytesField(GRAPH.output, tensorValueInfo(DRAW_OUTPUT, DTYPE.float, ["draws", twist ? 6 : 5])),
    ],
    OPSET_VERSION,
  );
}
