/**
 * One float32 input for all a GPU graph's small per-pass inputs (token ids, position ids, with a fixed
 * capacity each row's cache length, and the sampling head's uniforms and 1/T), split in the graph. (A
 * growing cache's attention mask stays an input of its own: the export's mask arithmetic runs on the CPU.)
 *
 * Why: onnxruntime's WebGPU provider uploads every input it reads on the GPU through a staging buffer
 * made for that upload, and flushes its queue for it; session 7 measured such uploads at 0.4 to 1.1 ms
 * each on the H100 for a few bytes, and a step had five. Packed, a step makes one upload; the split
 * costs one Split and three Casts on the GPU (the split sizes come from the input's shape, on the CPU).
 * Every value is exact in float32: ids and positions are integers below 2^24, and the uniforms and 1/T
 * were float32 already.
 *
 * Layout of STEP_INPUT [batch, columns]: the per-token groups (input_ids, then position_ids when the
 * graph has them), `sequence` columns each, then one column per row value (SEQLENS_K with a fixed
 * capacity, then the sampling head's uniform and 1/T when it has one). The layout is recorded with the prepared graph.
 */
import { DTYPE, GRAPH, constant, node, tensorValueInfo } from "./graphBuild";
import { bytesField } from "./protoWire";
import { SEQLENS_K } from "./fuseAttention";
import { SAMPLE_INVERSE_TEMPERATURE, SAMPLE_UNIFORM } from "./samplingHead";

export const STEP_INPUT = "smc_step";

/** Inputs with a column per token, in the order they are packed. */
export const TOKEN_GROUPS = ["input_ids", "position_ids"] as const;
/** Inputs with one column per row, in the order they are packed, after the token groups. */
export const ROW_VALUES = [SEQLENS_K, SAMPLE_UNIFORM, SAMPLE_INVERSE_TEMPERATURE] as const;

/** The lowest opset whose Split takes its sizes as an input. */
const SPLIT_SIZES_OPSET = 13;

/**
 * The nodes that make `inputs` (those of TOKEN_GROUPS and ROW_VALUES the graph reads; input_ids at
 * least) from STEP_INPUT, that input's declaration, and the layout, in packing order.
 * Each of `shapeOutputs` is made the ids' shape (batch, sequence) on the CPU: the graph's own
 * Shape(input_ids) would read ids now made on the GPU, and onnxruntime runs Shape on the CPU there, so
 * it downloaded them mid-pass (lavapipe's profile: one MemcpyToHost a pass).
 * Undefined where the opset is too old.
 */
export function packStepInputs(
  inputs: readonly string[],
  opset: number,
  shapeOutputs: readonly string[] = [],
): { nodes: Uint8Array[]; input: Uint8Array; layout: string[] } | undefined {
  if (opset < SPLIT_SIZES_OPSET || !inputs.includes("input_ids")) return undefined;
  const groups = TOKEN_GROUPS.filter((n) => inputs.includes(n));
  const values = ROW_VALUES.filter((n) => inputs.includes(n));
  const layout = [...groups, ...values];
  const p = (s: string) => `${STEP_INPUT}/${s}`;
  // sequence = (columns − row values) / token groups, on the CPU, as the Split's sizes.
  const nodes: Uint8Array[] = [
    constant(p("one"), "int64", [1], [1]),
    constant(p("values"), "int64", [1], [values.length]),
    constant(p("groups"), "int64", [1], [groups.length]),
    constant(p("flat"), "int64", [1], [-1]),
    node("Shape", [STEP_INPUT], [p("shape")], p("shape")),
    node("Gather", [p("shape"), p("one")], [p("columns")], p("columns"), { axis: 0 }),
    node("Sub", [p("columns"), p("values")], [p("token_columns")], p("token_columns")),
    node("Div", [p("token_columns"), p("groups")], [p("sequence")], p("sequence")),
    node("Concat", [...groups.map(() => p("sequence")), ...values.map(() => p("one"))], [p("sizes")], p("sizes"), { axis: 0 }),
  ];
  if (shapeOutputs.length) {
    nodes.push(constant(p("zero"), "int64", [1], [0]), node("Gather", [p("shape"), p("zero")], [p("batch")], p("batch"), { axis: 0 }));
    for (const out of shapeOutputs) nodes.push(node("Concat", [p("batch"), p("sequence")], [out], `${p("ids_shape")}/${out}`, { axis: 0 }));
  }
  // Split outputs: the uniforms and 1/T as they are ([batch, 1] columns broadcast as the head uses them).
  const parts = layout.map((n) => (n === SAMPLE_UNIFORM || n === SAMPLE_INVERSE_TEMPERATURE ? n : p(`${n}_float`)));
  nodes.push(node("Split", [STEP_INPUT, p("sizes")], parts, p("split"), { axis: 1 }));
  for (const n of groups) nodes.push(node("Cast", [p(`${n}_float`)], [n], p(`${n}_int64`), { to: DTYPE.int64 }));
  if (values.includes(SEQLENS_K)) {
    nodes.push(
      node("Cast", [p(`${SEQLENS_K}_float`)], [p(`${SEQLENS_K}_column`)], p(`${SEQLENS_K}_int32`), { to: DTYPE.int32 }),
      node("Reshape", [p(`${SEQLENS_K}_column`), p("flat")], [SEQLENS_K], p(SEQLENS_K)),
    );
  }
  return {
    nodes: nodes.map((n) => bytesField(GRAPH.node, n)),
    input: bytesField(GRAPH.input, tensorValueInfo(STEP_INPUT, DTYPE.float, ["batch_size", "step_columns"])),
    layout,
  };
}

/**
 * STEP_INPUT's values for a pass, in `layout`: per row, its tokens' ids and positions, then its
 * values (`rowValues(name)`: one per row).
 */
export function packStep(
  layout: readonly string[],
  batch: number,
  sequence: number,
  ids: ArrayLike<number>,
  positions: ArrayLike<number>,
  rowValues: (name: string) => ArrayLike<number>,
): Float32Array {
  const groups = layout.filter((n) => (TOKEN_GROUPS as readonly string[]).includes(n));
  const values = layout.slice(groups.length);
  const width = groups.length * sequence + values.length;
  const out = new Float32Array(batch * width);
  const columns = values.map(rowValues);
  for (let b = 0; b < batch; b++) {
    let at = b * width;
    for (const g of groups) {
      const from = g === "input_ids" ? ids : positions;
      for (let s = 0; s < sequence; s++) out[at++] = from[b * sequence + s];
    }
    for (const c of columns) out[at++] = c.length === 1 ? c[0] : c[b];
  }
  return out;
}
