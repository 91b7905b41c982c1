/**
 * Opens a model folder in the Hugging Face layout (config.json, tokenizer.json, tokenizer_config.json,
 * generation_config.json, an ONNX decoder at the top or in onnx/) and validates it up front, so a
 * malformed folder fails with a message that names the file and what is wrong with it.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { InputError } from "../../util/errors";
import { MODEL_DTYPES, ModelVariant } from "../../../protocol/protocol";
import { choiceOption, OptionValues, stringOption, UsageError } from "../../util/options";
import { hubIdOfFolder } from "../../hub/cache";
import type { AttentionWindows } from "../onnx/fuseAttention";

export class ModelFolderError extends InputError {}

/** The architecture facts the runtime needs, read from either Llama-style or GPT-2-style keys. */
export interface DecoderConfig {
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions?: number;
  bosTokenId?: number;
  eosTokenIds: number[];
  padTokenId?: number;
}

/** A model folder's text side: config, tokenizer, chat template (a remote backend needs no more). */
export type TokenizerFolder = Omit<ModelFolder, "onnxPath" | "onnxFile" | "dtype">;

export interface ModelFolder {
  dir: string;
  /** The folder's name; for a snapshot in the Hugging Face cache, its Hub id (org/name). */
  name: string;
  config: DecoderConfig;
  /** config.json as written, for anything model-specific. */
  rawConfig: Record<string, unknown>;
  generation: { temperature?: number; maxNewTokens?: number; eosTokenIds: number[] };
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  /** The chat template's source and the file it came from (readChatTemplate); unset: the model has none. */
  chatTemplate?: { source: string; path: string };
  /** The decoder's ONNX file, absolute, and as named relative to the folder. */
  onnxPath: string;
  onnxFile: string;
  /** Its precision by its name (dtypeOfFile); undefined for a file of no known pattern. */
  dtype?: Dtype;
}

/** The precisions an export comes in, by the suffix transformers.js gives its files (model_SUFFIX.onnx). */
export const DTYPES = MODEL_DTYPES;
export type Dtype = (typeof DTYPES)[number];
/** The model variant a user asks for (--dtype, the twistedSmc.modelVariant setting): auto is the device's order. */
export type { ModelVariant };

/**
 * The order files are tried in when no dtype is asked for. On the CPU: fp32, then the 8-bit ones
 * (quantized, int8, uint8), q4, q4f16, fp16 (about 4× slower than fp32 on the CPU), bnb4. On a GPU
 * (webgpu, cuda, named or the one --device auto is expected to pick: loadModel's variantDevice): fp16,
 * q4f16, fp32, q4, quantized, int8, uint8, bnb4. Quantized graphs are prepared like fp32 ones where
 * their LM head is recognised (docs/quantized-graphs.md); where not, decoderSession.ts warns.
 */
export const DTYPE_ORDER: Record<"cpu" | "gpu", readonly Dtype[]> = {
  cpu: ["fp32", "quantized", "int8", "uint8", "q4", "q4f16", "fp16", "bnb4"],
  gpu: ["fp16", "q4f16", "fp32", "q4", "quantized", "int8", "uint8", "bnb4"],
};

/**
 * The file names of one dtype, in the order tried: Optimum's at the top (model.onnx,
 * decoder_model_merged.onnx, decoder_with_past_model.onnx, which takes the cache's inputs), and
 * transformers.js's in onnx/ (model.onnx, model_fp16.onnx, model_q4.onnx …, and the older
 * decoder_model_merged_SUFFIX.onnx).
 */
export function dtypeFiles(dtype: Dtype): string[] {
  const suffix = dtype === "fp32" ? "" : `_${dtype}`;
  const stems = ["model", "decoder_model_merged", ...(dtype === "fp32" ? ["decoder_with_past_model"] : [])];
  return stems.flatMap((stem) => [`${stem}${suffix}.onnx`, `onnx/${stem}${suffix}.onnx`]);
}

/** Every ONNX file name looked for, in the CPU's order. */
export const ONNX_CANDIDATES = DTYPE_ORDER.cpu.flatMap(dtypeFiles);

/** The dtype a file's name says, undefined for a name of no known pattern. */
export function dtypeOfFile(file: string): Dtype | undefined {
  const name = file.replace(/\\/g, "/");
  return DTYPES.find((d) => dtypeFiles(d).includes(name) || dtypeFiles(d).some((f) => name.endsWith(`/${f}`)));
}

/** The dtypes a folder has, each with its first file. */
export function availableDtypes(dir: string): { dtype: Dtype; file: string }[] {
  return DTYPES.flatMap((dtype) => {
    const file = dtypeFiles(dtype).find((f) => existsSync(join(dir, f)));
    return file ? [{ dtype, file }] : [];
  });
}

/**
 * The CLI's help lines for --dtype and --onnx-file, their text from column `width` + 3 (`onnxFlag`
 * names the latter as a command spells it).
 */
export function modelFileHelp(width: number, onnxFlag = "--onnx-file"): string {
  const pad = (s: string) => `  ${s.padEnd(width)} `;
  return [
    `${pad("--dtype D")}${DTYPES.join("|")}: the folder's file of that precision`,
    `${pad("")}(default: the first found of ${DTYPE_ORDER.cpu.join(", ")};`,
    `${pad("")}on a GPU (named, or auto's pick): ${DTYPE_ORDER.gpu.join(", ")})`,
    `${pad(`${onnxFlag} PATH`)}the ONNX file to load, relative to the model folder (instead of --dtype)`,
  ].join("\n");
}

/** --dtype and --onnx-file (or onnx_file) as OpenOptions; both at once are refused. */
export function modelFileOptions(values: OptionValues, onnxFlag = "onnx-file"): Pick<OpenOptions, "dtype" | "onnxFile"> {
  const dtype = choiceOption<ModelVariant>(values, "dtype", ["auto", ...DTYPES], "auto");
  const onnxFile = stringOption(values, onnxFlag);
  if (onnxFile !== undefined && dtype !== "auto") throw new UsageError(`give --dtype or --${onnxFlag}, not both`);
  return { dtype, ...(onnxFile !== undefined ? { onnxFile } : {}) };
}

function readJson(dir: string, file: string, required: boolean): Record<string, unknown> | undefined {
  const path = join(dir, file);
  if (!existsSync(path)) {
    if (required) throw new ModelFolderError(`model folder ${dir} has no ${file}`);
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ModelFolderError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ModelFolderError(`${path} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * The chat template, where transformers looks for it: chat_template.jinja (newer exports keep it
 * there), chat_template.json ({"chat_template": …}), else tokenizer_config.json's chat_template. A
 * list of named templates (tokenizer_config.json's older form) gives the one named "default".
 */
function readChatTemplate(dir: string, tokenizerConfig: Record<string, unknown>): ModelFolder["chatTemplate"] {
  const jinja = join(dir, "chat_template.jinja");
  if (existsSync(jinja)) return { source: readFileSync(jinja, "utf8"), path: jinja };
  const fromJson = readJson(dir, "chat_template.json", false);
  const [template, path] = fromJson
    ? [fromJson.chat_template, join(dir, "chat_template.json")]
    : [tokenizerConfig.chat_template, join(dir, "tokenizer_config.json")];
  let source: string | undefined;
  if (typeof template === "string") source = template;
  else if (Array.isArray(template))
    source = (template as { name?: string; template?: string }[]).find((t) => t.name === "default")?.template;
  return source ? { source, path } : undefined;
}

function positiveInt(cfg: Record<string, unknown>, path: string, keys: string[], fallback?: number): number {
  for (const k of keys) {
    const v = cfg[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new ModelFolderError(`${path}: "${k}" must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  }
  if (fallback !== undefined) return fallback;
  throw new ModelFolderError(`${path} lacks ${keys.map((k) => `"${k}"`).join(" / ")}`);
}

function tokenIds(v: unknown): number[] {
  if (typeof v === "number") return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number");
  return [];
}

export function parseDecoderConfig(cfg: Record<string, unknown>, path: string): DecoderConfig {
  const hiddenSize = positiveInt(cfg, path, ["hidden_size", "n_embd", "d_model"]);
  const numHeads = positiveInt(cfg, path, ["num_attention_heads", "n_head"]);
  const numKvHeads = positiveInt(cfg, path, ["num_key_value_heads", "multi_query_group_num"], numHeads);
  const headDim = positiveInt(cfg, path, ["head_dim"], Math.floor(hiddenSize / numHeads));
  if (numHeads % numKvHeads !== 0) {
    throw new ModelFolderError(`${path}: num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads})`);
  }
  const maxPositions = cfg.max_position_embeddings ?? cfg.n_positions;
  return {
    modelType: typeof cfg.model_type === "string" ? cfg.model_type : "unknown",
    vocabSize: positiveInt(cfg, path, ["vocab_size"]),
    hiddenSize,
    numLayers: positiveInt(cfg, path, ["num_hidden_layers", "n_layer", "num_layers"]),
    numHeads,
    numKvHeads,
    headDim,
    maxPositions: typeof maxPositions === "number" ? maxPositions : undefined,
    bosTokenId: typeof cfg.bos_token_id === "number" ? cfg.bos_token_id : undefined,
    eosTokenIds: tokenIds(cfg.eos_token_id),
    padTokenId: typeof cfg.pad_token_id === "number" ? cfg.pad_token_id : undefined,
  };
}

export interface OpenOptions {
  /** A specific ONNX file, relative to the folder, instead of the first candidate found. */
  onnxFile?: string;
  /** The precision to load (its files, dtypeFiles); unset or auto: the device's order (DTYPE_ORDER). */
  dtype?: ModelVariant;
  /** The device whose order applies: webgpu or cuda takes the GPU's; anything else (auto too) the CPU's. loadModel resolves auto first. */
  device?: string;
}

export function openModelFolder(dirInput: string, options: OpenOptions = {}): ModelFolder {
  const text = openTokenizerFolder(dirInput);
  const dir = text.dir;
  let onnxFile: string | undefined;
  if (options.onnxFile) {
    onnxFile = options.onnxFile;
    if (!existsSync(join(dir, onnxFile))) throw new ModelFolderError(`model folder ${dir} has no ${options.onnxFile}`);
  } else if (options.dtype && options.dtype !== "auto") {
    const dtype = options.dtype;
    if (!(DTYPES as readonly string[]).includes(dtype)) throw new ModelFolderError(`unknown dtype ${dtype}: one of ${DTYPES.join(", ")}`);
    onnxFile = dtypeFiles(dtype).find((f) => existsSync(join(dir, f)));
    if (!onnxFile) {
      const has = availableDtypes(dir);
      throw new ModelFolderError(
        `model folder ${dir} has no ${dtype} decoder (${dtypeFiles(dtype).slice(0, 2).join(" or ")}); it has ${
          has.length ? has.map((h) => `${h.dtype} (${h.file})`).join(", ") : "no ONNX decoder"
        }`,
      );
    }
  } else {
    const gpu = options.device === "webgpu" || options.device === "cuda";
    onnxFile = DTYPE_ORDER[gpu ? "gpu" : "cpu"].flatMap(dtypeFiles).find((f) => existsSync(join(dir, f)));
    if (!onnxFile) {
      throw new ModelFolderError(
        `model folder ${dir} has no ONNX decoder (looked for model.onnx, decoder_model_merged.onnx, decoder_with_past_model.onnx ` +
          `and their _fp16, _q4, _q4f16, _int8, _uint8, _quantized and _bnb4 forms, at the top and in onnx/)`,
      );
    }
  }
  const onnxPath = join(dir, onnxFile);
  if (statSync(onnxPath).size < 16) throw new ModelFolderError(`${onnxPath} is empty or truncated`);

  return { ...text, onnxPath, onnxFile, dtype: dtypeOfFile(onnxFile) };
}

/**
 * The folder's config.json, tokenizer.json, tokenizer_config.json, generation_config.json and chat
 * template, checked as for loading, without looking for an ONNX file: all a model served elsewhere
 * needs here (the prompt's tokens, the EOS ids, the text of what it writes).
 */
export function openTokenizerFolder(dirInput: string): TokenizerFolder {
  const dir = resolve(dirInput);
  if (!existsSync(dir)) throw new ModelFolderError(`model folder ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw new ModelFolderError(`${dir} is not a folder (expected a model folder with config.json)`);

  const rawConfig = readJson(dir, "config.json", true)!;
  const config = parseDecoderConfig(rawConfig, join(dir, "config.json"));
  const tokenizerJson = readJson(dir, "tokenizer.json", true)!;
  const model = tokenizerJson.model as Record<string, unknown> | undefined;
  if (!model || typeof model !== "object" || typeof model.type !== "string") {
    throw new ModelFolderError(`${join(dir, "tokenizer.json")} has no "model" section with a "type"`);
  }
  const tokenizerConfig = readJson(dir, "tokenizer_config.json", false) ?? {};
  const gen = readJson(dir, "generation_config.json", false) ?? {};

  const vocab = model.vocab;
  const vocabCount = Array.isArray(vocab) ? vocab.length : vocab && typeof vocab === "object" ? Object.keys(vocab).length : 0;
  const added = Array.isArray(tokenizerJson.added_tokens) ? (tokenizerJson.added_tokens as { id?: number }[]) : [];
  const maxId = Math.max(vocabCount - 1, ...added.map((t) => (typeof t.id === "number" ? t.id : -1)));
  if (maxId >= config.vocabSize) {
    throw new ModelFolderError(
      `tokenizer.json has token id ${maxId} but config.json says vocab_size ${config.vocabSize}: the tokenizer does not belong to this model`,
    );
  }

  const eos = tokenIds(gen.eos_token_id);
  return {
    dir,
    name: hubIdOfFolder(dir) ?? basename(dir),
    config,
    rawConfig,
    generation: {
      temperature: typeof gen.temperature === "number" ? gen.temperature : undefined,
      maxNewTokens: typeof gen.max_new_tokens === "number" ? gen.max_new_tokens : undefined,
      eosTokenIds: eos.length ? eos : config.eosTokenIds,
    },
    tokenizerJson,
    tokenizerConfig,
    chatTemplate: readChatTemplate(dir, tokenizerConfig),
  };
}

/** The shipped demo model: found by walking up from this file (source tree, bundle, or .vsix). */
export function defaultModelDir(start = __dirname): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, "models", "tiny-math-llama");
    if (existsSync(join(candidate, "config.json"))) return candidate;
    if (dirname(dir) === dir) throw new ModelFolderError("the shipped model folder models/tiny-math-llama was not found; pass --model DIR");
  }
}

/**
 * Whether a fixed-capacity cache can carry the model's attention, by its config: causal, with at most a
 * sliding window (slidingWindowLayers, which the cache's attention nodes then carry); not ALiBi's
 * biases, which only the export's mask carries and the fixed capacity drops. An export's own
 * GroupQueryAttention keeps a fixed capacity in any case (adoptGroupQueryAttention.ts).
 */
export function fixedCapacityCarriesAttention(folder: ModelFolder): boolean {
  const alibi = folder.rawConfig.alibi === true || ["bloom", "mpt"].includes(folder.config.modelType);
  return !alibi;
}

/**
 * The model's sliding window by layer, by its config as transformers reads it: `layer_types`, else
 * Gemma-2's (even layers slide), Gemma-3's (`sliding_window_pattern`, default 6: every p-th layer is
 * full), Qwen2's (layers from `max_window_layers` on) and Mistral's (every layer). Undefined without
 * a window (or with `use_sliding_window` false). The fixed-capacity cache puts it in its attention
 * nodes (fuseAttention.ts), where the export's masks agree with it.
 */
export function slidingWindowLayers(folder: ModelFolder): AttentionWindows | undefined {
  const raw = folder.rawConfig;
  const size = raw.sliding_window;
  if (typeof size !== "number" || !(size > 0) || raw.use_sliding_window === false) return undefined;
  const layers = folder.config.numLayers;
  const types = raw.layer_types;
  const index = Array.from({ length: layers }, (_, i) => i);
  let sliding: boolean[];
  if (Array.isArray(types) && types.length === layers) sliding = types.map((t) => t === "sliding_attention");
  else if (folder.config.modelType === "gemma2") sliding = index.map((i) => i % 2 === 0);
  else if (/^gemma3/.test(folder.config.modelType)) {
    const pattern = typeof raw.sliding_window_pattern === "number" ? raw.sliding_window_pattern : 6;
    sliding = index.map((i) => (i + 1) % pattern !== 0);
  } else if (folder.config.modelType === "qwen2") {
    const from = typeof raw.max_window_layers === "number" ? raw.max_window_layers : 0;
    sliding = index.map((i) => i >= from);
  } else sliding = index.map(() => true);
  return { size, sliding };
}
