/**
 * Opens a model folder and everything needed to run it: the one entry point for CLI, server and tests.
 *
 * lm/model/ is the model as a folder on disk, before anything runs it: modelFolder.ts (the Hugging
 * Face layout, config.json as a DecoderConfig, validated up front), tokenizer.ts (tokenizer.json and
 * the prompt format), contextWindow.ts (a problem must fit the positions the model was trained for),
 * modelDomain.ts (the words it was trained on, domain.json), and this file, which opens the folder
 * with its decoder (lm/decoder/).
 */
import { CausalLM } from "../causalLm";
import { defaultModelDir, ModelFolder, openModelFolder, OpenOptions } from "./modelFolder";
import { candidates, Device, DeviceRequest, DeviceRunError, precheck } from "../decoder/device";
import { OnnxDecoder, OnnxDecoderOptions } from "../decoder/onnxDecoder";
import { TextTokenizer } from "./tokenizer";
import { resolveModelArgument } from "../../hub/cache";
import { cacheDirFromEnv, preparedCacheMiBFromEnv } from "../../environment";
import { evictPrepared, holdPrepared, markPrepared, preparedSince } from "../preparedCache";

export interface LoadedModel {
  folder: ModelFolder;
  tokenizer: TextTokenizer;
  lm: CausalLM;
}

export type LoadOptions = OpenOptions & OnnxDecoderOptions;

export async function loadModel(dir?: string, options: LoadOptions = {}): Promise<LoadedModel> {
  if (dir !== undefined) dir = resolveModelArgument(dir); // a Hub id (org/name[@revision]) as its folder in the HF cache
  const path = dir ?? defaultModelDir();
  // The file is chosen before the device opens: in the order of the device auto is expected to pick.
  const orderedFor = variantDevice(options.device ?? "cpu");
  const folder = openModelFolder(path, { ...options, device: orderedFor });
  const tokenizer = TextTokenizer.fromFolder(folder);
  const lm = await openDecoder(folder, options);
  // A GPU auto expected could not run the model: the CPU takes the file of its own order, if another.
  const byOrder = options.onnxFile === undefined && (options.dtype ?? "auto") === "auto";
  if (orderedFor === "cpu" || !byOrder || !lm.device.startsWith("cpu")) return { folder, tokenizer, lm };
  const cpuFolder = openModelFolder(path, { ...options, device: "cpu" });
  if (cpuFolder.onnxPath === folder.onnxPath) return { folder, tokenizer, lm };
  const skipped = lm.deviceAttempts.filter((a) => a.skipped);
  await lm.dispose();
  const cpu = await openDecoder(cpuFolder, { ...options, device: "cpu", priorAttempts: skipped });
  return { folder: cpuFolder, tokenizer, lm: cpu };
}

/**
 * The folder's decoder, with the prepared-graph cache's upkeep (lm/preparedCache.ts): its prepared
 * graphs are marked as used before they are opened and for as long as this process runs, and a load
 * that wrote a new one removes stale and least recently used ones past the cache's budget.
 */
async function openDecoder(folder: ModelFolder, options: LoadOptions): Promise<OnnxDecoder> {
  const cacheDir = cacheDirFromEnv();
  const budgetBytes = preparedCacheMiBFromEnv() * 1024 ** 2;
  const since = Date.now();
  markPrepared(folder.onnxPath, cacheDir, since);
  const lm = await OnnxDecoder.load(folder, options);
  holdPrepared(folder.onnxPath, cacheDir);
  if (preparedSince(folder.onnxPath, since, cacheDir)) evictPrepared(cacheDir, { budgetBytes });
  return lm;
}

/**
 * The device whose order of files (DTYPE_ORDER) a request takes when no file or precision is given:
 * the device named, or for `auto` the first of its candidates that nothing rules out before opening
 * (precheck: CUDA's libraries, a Vulkan loader and a hardware driver for WebGPU). A GPU that passes
 * these and still fails to open hands over to the CPU, which loadModel then gives the CPU's file.
 */
export function variantDevice(request: DeviceRequest, check: typeof precheck = precheck): Device {
  if (request !== "auto") return request;
  return candidates(request).find((d) => d === "cpu" || check(d, request) === undefined) ?? "cpu";
}

/**
 * Runs `work` on the model; when a GPU fails in the middle (out of memory at a large batch, a lost
 * device), loads the same folder on the CPU and runs `work` again there, so a user gets an answer and
 * the reason instead of a crash. `onFallback` receives the CPU model (the caller owns it from then on).
 */
export async function withCpuFallback<T>(
  model: LoadedModel,
  options: LoadOptions,
  work: (model: LoadedModel) => Promise<T>,
  onFallback?: (cpu: LoadedModel) => void,
): Promise<T> {
  try {
    return await work(model);
  } catch (e) {
    if (!(e instanceof DeviceRunError) || !(model.lm instanceof OnnxDecoder)) throw e;
    const failed = model.lm.device.split(" ")[0] as "webgpu" | "cuda";
    const prior = [...model.lm.deviceAttempts.filter((a) => a.skipped), { device: failed, skipped: `failed during the run: ${e.message}` }];
    const cpu = await loadModel(model.folder.dir, { ...options, device: "cpu", priorAttempts: prior });
    onFallback?.(cpu);
    return work(cpu);
  }
}
