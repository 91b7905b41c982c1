/**
 * Which files of a Hub repository one ONNX variant needs: the JSON files around the model (config,
 * generation config, tokenizer, chat template, special tokens) and one decoder graph with all its
 * external data parts. transformers.js / onnx-community repositories hold the variants side by side
 * in onnx/ (model.onnx, model_fp16.onnx, model_q4.onnx, ...); Optimum exports put model.onnx at the top.
 */

export const DTYPES = ["fp32", "fp16", "q4", "q4f16", "int8", "uint8", "quantized", "bnb4"] as const;
export type Dtype = (typeof DTYPES)[number];

/** --dtype auto takes fp32 when its graph and data parts are at most this large, else the first of AUTO_ORDER present. */
export const AUTO_FP32_MAX_BYTES = 4 * 1024 ** 3;
/** After fp32: 4-bit first (smallest, runs on the CPU), then the 8-bit ones, and fp16 (slow on the CPU) late. */
export const AUTO_ORDER: readonly Dtype[] = ["q4", "int8", "quantized", "uint8", "q4f16", "fp16", "bnb4", "fp32"];

/** The small files a model folder uses, fetched whenever the repository has them. */
export const SIDE_FILES = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "chat_template.json",
];

export interface RepoFile {
  path: string;
  size: number;
}

/** The graph file names of a dtype, in the order they are looked for. */
function graphCandidates(dtype: Dtype): string[] {
  const suffix = dtype === "fp32" ? "" : `_${dtype}`;
  return [`onnx/model${suffix}.onnx`, `model${suffix}.onnx`];
}

/** A graph's external data parts: `model.onnx_data`, `model.onnx_data_1`, ..., or `model.onnx.data`. */
export function isDataPartOf(graph: string, path: string): boolean {
  return path.startsWith(graph) && /^(\.data|_data(_\d+)?)$/.test(path.slice(graph.length));
}

/** The dtype of a graph file name (onnx/model_q4.onnx → q4), or undefined for anything else. */
export function dtypeOfGraph(path: string): Dtype | undefined {
  const m = /^(?:onnx\/)?model(?:_([a-z0-9]+))?\.onnx$/.exec(path);
  if (!m) return undefined;
  const d = (m[1] ?? "fp32") as Dtype;
  return DTYPES.includes(d) ? d : undefined;
}

/** The dtypes a listing has a graph for, in DTYPES order. */
export function availableDtypes(files: readonly RepoFile[]): Dtype[] {
  const present = new Set(files.map((f) => dtypeOfGraph(f.path)).filter((d): d is Dtype => d !== undefined));
  return DTYPES.filter((d) => present.has(d));
}

export interface Selection {
  dtype: Dtype;
  graph: string;
  /** Every file to download: side files, the graph, its data parts. */
  files: RepoFile[];
}

/** The graph and data files of a dtype in a listing, or undefined when the repo has no such graph. */
function graphFiles(files: readonly RepoFile[], dtype: Dtype): { graph: string; parts: RepoFile[] } | undefined {
  const byPath = new Map(files.map((f) => [f.path, f]));
  const graph = graphCandidates(dtype).find((p) => byPath.has(p));
  if (!graph) return undefined;
  return { graph, parts: [byPath.get(graph)!, ...files.filter((f) => isDataPartOf(graph, f.path))] };
}

/**
 * Picks the files for `dtype` ("auto": fp32 when its graph and data total at most AUTO_FP32_MAX_BYTES,
 * else the first of AUTO_ORDER the repo has). Returns a string saying what is missing when it cannot.
 */
export function selectFiles(files: readonly RepoFile[], dtype: Dtype | "auto"): Selection | { missing: string; available: Dtype[] } {
  const available = availableDtypes(files);
  let chosen: Dtype | undefined = dtype === "auto" ? undefined : dtype;
  if (dtype === "auto") {
    const fp32 = graphFiles(files, "fp32");
    const fp32Bytes = fp32?.parts.reduce((s, f) => s + f.size, 0) ?? Infinity;
    chosen = fp32Bytes <= AUTO_FP32_MAX_BYTES ? "fp32" : AUTO_ORDER.find((d) => available.includes(d));
  }
  const g = chosen && graphFiles(files, chosen);
  if (!chosen || !g) return { missing: chosen ?? "auto", available };
  const side = files.filter((f) => SIDE_FILES.includes(f.path));
  return { dtype: chosen, graph: g.graph, files: [...side, ...g.parts] };
}
