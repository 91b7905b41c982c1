/**
 * A one-purpose graph that reads chosen rows of a decoder's logits: onnxruntime-node cannot download
 * a GPU output directly (its download is not implemented), so the logits the decoder leaves on the
 * device are fed to this graph on the same device, which returns just the rows asked for, as float32
 * on the CPU. Usually a few rows of the last position instead of every row (and, after a prefill,
 * every position).
 */
import { constant, DTYPE, GRAPH, MODEL, node, OPSET, tensorValueInfo } from "./graphBuild";
import { bytesField, concat, message } from "./protoWire";

export const ROWS_INPUT = { logits: "logits", rows: "rows", from: "from_position" } as const;
export const ROWS_OUTPUT = "row_logits";
/** The Slice start for the last position only (`from_position`); 0 takes every position. */
export const LAST_POSITION = -1;

const IR_VERSION = 8;
const OPSET_VERSION = 13;

/** The model bytes for logits of element type `elem` (DTYPE.float or DTYPE.float16). */
export function logitRowsModel(elem: number): Uint8Array {
  const p = (s: string) => `logit_rows/${s}`;
  const nodes = [
    constant(p("end"), "int64", [1], [2 ** 53]),
    constant(p("axis1"), "int64", [1], [1]),
    // [batch, seq, vocab] → positions from `from_position` → the rows asked for → [rows × positions, vocab].
    node("Slice", [ROWS_INPUT.logits, ROWS_INPUT.from, p("end"), p("axis1")], [p("positions")], p("positions")),
    node("Gather", [p("positions"), ROWS_INPUT.rows], [p("picked")], p("picked"), { axis: 0 }),
    node("Flatten", [p("picked")], [p("flat")], p("flat"), { axis: 2 }),
    node("Cast", [p("flat")], [ROWS_OUTPUT], p("to_float"), { to: DTYPE.float }),
  ];
  const graph = concat([
    ...nodes.map((n) => bytesField(GRAPH.node, n)),
    message([[GRAPH_NAME, "logit_rows"]]),
    bytesField(GRAPH.input, tensorValueInfo(ROWS_INPUT.logits, elem, ["batch", "sequence", "vocab"])),
    bytesField(GRAPH.input, tensorValueInfo(ROWS_INPUT.rows, DTYPE.int64, ["rows"])),
    bytesField(GRAPH.input, tensorValueInfo(ROWS_INPUT.from, DTYPE.int64, [1])),
    bytesField(GRAPH.output, tensorValueInfo(ROWS_OUTPUT, DTYPE.float, ["rows_by_positions", "vocab"])),
  ]);
  return message([
    [MODEL_IR_VERSION, IR_VERSION],
    [MODEL.opsetImport, message([[OPSET.domain, ""], [OPSET.version, OPSET_VERSION]])],
    [MODEL.graph, graph],
  ]);
}

const MODEL_IR_VERSION = 1;
const GRAPH_NAME = 2;
