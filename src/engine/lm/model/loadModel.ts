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
import { DeviceRunError } from "../decoder/device";
import { OnnxDecoder, OnnxDecoderOptions } from "../decoder/onnxDecoder";
import { TextTokenizer } from "./tokenizer";
import { resolveModelArgument } from "../../hub/cache";

export interface LoadedModel {
  folder: ModelFolder;
  tokenizer: TextTokenizer;
  lm: CausalLM;
}

export type LoadOptions = OpenOptions & OnnxDecoderOptions;

export async function loadModel(dir?: string, options: LoadOptions = {}): Promise<LoadedModel> {
  if (dir !== undefined) dir = resolveModelArgument(dir); // a Hub id (org/name[@revision]) as its folder in the HF cache
  const folder = openModelFolder(dir ?? defaultModelDir(), options);
  const tokenizer = TextTokenizer.fromFolder(folder);
  const lm = await OnnxDecoder.load(folder, options);
  return { folder, tokenizer, lm };
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
