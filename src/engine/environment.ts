/**
 * The TWISTED_SMC_* environment variables the engine reads: each one is read here and nowhere else,
 * by a getter that says its type, its default and what it does, and refuses a value it does not know
 * with an InputError naming the variable. A getter takes the environment to read (process.env unless
 * a test passes another). What a caller passes in code wins over them (OnnxDecoderOptions: fixedCapacity,
 * cacheBudget, webgpuValidation, ortProfile), so a benchmark or a test sets options, not variables.
 *
 * TWISTED_SMC_REQUIRE_WEBGPU is not the engine's: the WebGPU test suite and its script read it.
 */
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { InputError } from "./util/errors";

/**
 * TWISTED_SMC_FIXED_CAPACITY — OnnxDecoderOptions.fixedCapacity where the caller leaves it unset: 0 (or
 * no) keeps the growing cache from the CLI or the editor's engine, 1 (or yes) asks for a fixed capacity
 * even where it is not the default (a fused graph on the CPU). Default (unset or blank): undefined, the
 * device's default (fixedCapacityDefault, lm/decoder/fixedCapacity.ts; on the CPU too for a model with a
 * sliding window: onnxDecoder.ts). A graph with its own GroupQueryAttention keeps a fixed capacity
 * regardless (onnx/adoptGroupQueryAttention.ts).
 */
export function fixedCapacityFromEnv(env: NodeJS.ProcessEnv = process.env): boolean | undefined {
  const value = (env.TWISTED_SMC_FIXED_CAPACITY ?? "").trim().toLowerCase();
  if (value === "") return undefined;
  if (["0", "no"].includes(value)) return false;
  if (["1", "yes"].includes(value)) return true;
  throw new InputError(`TWISTED_SMC_FIXED_CAPACITY=${env.TWISTED_SMC_FIXED_CAPACITY} is not one of 1, yes, 0, no`);
}

/** The default cache budget on a GPU, in MiB (TWISTED_SMC_CACHE_BUDGET_MB sets it). */
export const CACHE_BUDGET_MB = 8192;

/**
 * TWISTED_SMC_CACHE_BUDGET_MB — on a GPU, OnnxDecoderOptions.cacheBudget in MiB where the caller leaves
 * it unset (lm/decoder/fixedCapacity.ts, cacheBudgetFor). Default: CACHE_BUDGET_MB. Refused: not a number ≥ 0.
 */
export function cacheBudgetMiBFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const value = env.TWISTED_SMC_CACHE_BUDGET_MB;
  const mib = Number(value ?? CACHE_BUDGET_MB);
  if (!(mib >= 0)) throw new InputError(`the cache budget must be a number of bytes ≥ 0 (TWISTED_SMC_CACHE_BUDGET_MB: MiB), got ${value}`);
  return mib;
}

/** The default size the prepared-graph cache is kept under, in MiB (TWISTED_SMC_PREPARED_CACHE_MB sets it). */
export const PREPARED_CACHE_MB = 10240;

/**
 * TWISTED_SMC_PREPARED_CACHE_MB — the MiB of prepared graphs the cache folder (TWISTED_SMC_CACHE_DIR) keeps:
 * past it, writing a new one removes the least recently used (lm/preparedCache.ts). Default (unset or
 * blank): PREPARED_CACHE_MB. Refused: not a number ≥ 0.
 */
export function preparedCacheMiBFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const value = env.TWISTED_SMC_PREPARED_CACHE_MB;
  const mib = value === undefined || value.trim() === "" ? PREPARED_CACHE_MB : Number(value);
  if (!(mib >= 0)) throw new InputError(`TWISTED_SMC_PREPARED_CACHE_MB must be a number of MiB ≥ 0, got ${value}`);
  return mib;
}

/** WebGPU's validation modes, as onnxruntime's WebGPU execution provider names them. */
export const WEBGPU_VALIDATION = ["disabled", "wgpuOnly", "basic", "full"] as const;
export type WebGpuValidation = (typeof WEBGPU_VALIDATION)[number];

/** `value` as a WebGPU validation mode (blank: none), or an InputError saying `name`=value is not one. */
export function webgpuValidation(value: string | undefined, name: string): WebGpuValidation | undefined {
  if (!value) return undefined;
  if (!(WEBGPU_VALIDATION as readonly string[]).includes(value))
    throw new InputError(`${name}=${value} is not one of ${WEBGPU_VALIDATION.join(", ")}`);
  return value as WebGpuValidation;
}

/**
 * TWISTED_SMC_WEBGPU_VALIDATION — WebGPU's validation mode (OnnxDecoderOptions.webgpuValidation where the
 * caller leaves it unset), read when a WebGPU session is made (lm/decoder/device.ts, executionProvider).
 * Default (unset or blank): onnxruntime's own, `basic`.
 */
export function webgpuValidationFromEnv(env: NodeJS.ProcessEnv = process.env): WebGpuValidation | undefined {
  return webgpuValidation(env.TWISTED_SMC_WEBGPU_VALIDATION, "TWISTED_SMC_WEBGPU_VALIDATION");
}

/**
 * TWISTED_SMC_ORT_PROFILE — a diagnostic: the file prefix onnxruntime writes its trace of every kernel of a
 * decoder's session to (chrome://tracing JSON, `PREFIX_<date>.json`, on dispose); OnnxDecoderOptions.ortProfile
 * where the caller leaves it unset. Default (unset or blank): no trace.
 */
export function ortProfileFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.TWISTED_SMC_ORT_PROFILE || undefined;
}

/**
 * TWISTED_SMC_GSM8K — the folder holding GSM8K's train.jsonl and test.jsonl, resolved against the working
 * folder. Default (unset or blank): undefined, and the dataset is looked for (train/data.ts).
 */
export function gsm8kDirFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dir = env.TWISTED_SMC_GSM8K;
  return dir ? resolve(dir) : undefined;
}

/**
 * TWISTED_SMC_CACHE_DIR — where the engine keeps what it derives from a model (the SMC-prepared graphs,
 * lm/onnx/prepareGraph.ts), resolved against the working folder: never the model's own folder, which
 * may be read-only or shared. Default (unset or blank): $XDG_CACHE_HOME/twisted-smc where XDG_CACHE_HOME
 * is an absolute path, else ~/.cache/twisted-smc.
 */
export function cacheDirFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TWISTED_SMC_CACHE_DIR) return resolve(env.TWISTED_SMC_CACHE_DIR);
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, "twisted-smc");
  return join(homedir(), ".cache", "twisted-smc");
}

/**
 * OPENAI_API_KEY — the key an OpenAI-compatible inference server asks for (`--backend openai`), sent as
 * `Authorization: Bearer …` and nowhere else. The editor passes its secret-storage key to the engine
 * process the same way. Default (unset or blank): no key, as a local llama-server or vLLM wants.
 */
export function apiKeyFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const key = env.OPENAI_API_KEY?.trim();
  return key ? key : undefined;
}
