/**
 * Test helper: a model's initializers moved to an external data file, as onnx.save_model(...,
 * save_as_external_data=True) writes them (data_location EXTERNAL, location/offset/length entries),
 * made with the engine's own wire-format tools so no Python onnx is needed.
 */
import { MODEL, GRAPH } from "../../src/engine/lm/onnx/graphBuild";
import { bytesField, concat, fields, message } from "../../src/engine/lm/onnx/protoWire";

const RAW_DATA = 9;
const EXTERNAL_DATA = 13;
const DATA_LOCATION = 14;

export function toExternalData(model: Uint8Array, location: string): { model: Uint8Array; data: Uint8Array } {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const tensor = (t: Uint8Array): Uint8Array => {
    const raw = [...fields(t)].find((f) => f.field === RAW_DATA);
    if (!raw || raw.value.length < 64) return t;
    // onnx aligns each tensor to 4 KiB in the data file; any offset works, keep it simple.
    const at = offset;
    chunks.push(raw.value);
    offset += raw.value.length;
    const entry = (key: string, value: string) =>
      bytesField(
        EXTERNAL_DATA,
        message([
          [1, key],
          [2, value],
        ]),
      );
    return concat([
      ...[...fields(t)].filter((f) => f.field !== RAW_DATA).map((f) => f.raw),
      entry("location", location),
      entry("offset", String(at)),
      entry("length", String(raw.value.length)),
      message([[DATA_LOCATION, 1]]),
    ]);
  };
  const graph = (g: Uint8Array) =>
    concat([...fields(g)].map((f) => (f.field === GRAPH.initializer ? bytesField(GRAPH.initializer, tensor(f.value)) : f.raw)));
  const out = concat([...fields(model)].map((f) => (f.field === MODEL.graph ? bytesField(MODEL.graph, graph(f.value)) : f.raw)));
  return { model: out, data: concat(chunks) };
}
