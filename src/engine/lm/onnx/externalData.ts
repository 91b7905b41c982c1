/**
 * Weights kept outside the model file (onnx external data: `model.onnx` + `model.onnx_data`): which
 * files a graph names, renaming them, and the folder onnxruntime must be told to read them from.
 */
import { realpathSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { GRAPH, MODEL } from "./graphBuild";
import { bytesField, concat, fields, message, text } from "./protoWire";

/** onnx TensorProto's fields for data kept outside the model file. */
const TENSOR_EXTERNAL = { externalData: 13, dataLocation: 14 };
const ENTRY = { key: 1, value: 2 };

/**
 * The files a model's initializers keep their data in (the `location` of each external-data entry),
 * relative to the model's folder as onnx writes them; empty where every weight is inside the model.
 */
export function externalDataLocations(model: Uint8Array): string[] {
  const graph = [...fields(model)].find((f) => f.field === MODEL.graph);
  if (!graph) return [];
  const found = new Set<string>();
  for (const g of fields(graph.value)) {
    if (g.field !== GRAPH.initializer) continue;
    for (const t of fields(g.value)) {
      if (t.field !== TENSOR_EXTERNAL.externalData) continue;
      const entry = [...fields(t.value)];
      const key = entry.find((e) => e.field === ENTRY.key);
      const value = entry.find((e) => e.field === ENTRY.value);
      if (key && value && text(key) === "location") found.add(text(value));
    }
  }
  return [...found];
}

/** The model with each initializer's external-data `location` passed through `rename`. */
export function withExternalDataLocations(model: Uint8Array, rename: (location: string) => string): Uint8Array {
  const entry = (e: Uint8Array) => {
    const parts = [...fields(e)];
    const key = parts.find((f) => f.field === ENTRY.key);
    const value = parts.find((f) => f.field === ENTRY.value);
    if (!key || !value || text(key) !== "location") return e;
    return message([
      [ENTRY.key, "location"],
      [ENTRY.value, rename(text(value))],
    ]);
  };
  const tensor = (t: Uint8Array) =>
    concat(
      [...fields(t)].map((f) =>
        f.field === TENSOR_EXTERNAL.externalData ? bytesField(TENSOR_EXTERNAL.externalData, entry(f.value)) : f.raw,
      ),
    );
  const graph = (g: Uint8Array) =>
    concat([...fields(g)].map((f) => (f.field === GRAPH.initializer ? bytesField(GRAPH.initializer, tensor(f.value)) : f.raw)));
  return concat([...fields(model)].map((f) => (f.field === MODEL.graph ? bytesField(MODEL.graph, graph(f.value)) : f.raw)));
}

/**
 * Where onnxruntime is to read a graph's external data from, and how its locations must change for
 * that; undefined without external data. onnxruntime (1.30) refuses a data file that resolves out of
 * that folder, a symbolic link included, as in the Hugging Face cache, where snapshots/COMMIT/model.onnx_data
 * links to blobs/HASH: there the folder is the one the links resolve to, and each location the file's
 * name there. Data files that do not resolve to one folder (or are missing) are left for onnxruntime to name.
 */
export function externalDataHome(model: Uint8Array, sourceDir: string): { dir: string; rename?: (location: string) => string } | undefined {
  const locations = externalDataLocations(model);
  if (!locations.length) return undefined;
  const real = new Map<string, string>();
  try {
    for (const l of locations) real.set(l, realpathSync(join(sourceDir, l)));
    const home = realpathSync(sourceDir);
    if (locations.every((l) => real.get(l) === join(home, l))) return { dir: sourceDir };
  } catch {
    return { dir: sourceDir };
  }
  const dir = dirname(real.get(locations[0])!);
  if (![...real.values()].every((r) => dirname(r) === dir)) return { dir: sourceDir };
  return { dir, rename: (l) => (real.has(l) ? basename(real.get(l)!) : l) };
}
