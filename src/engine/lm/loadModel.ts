/** Opens a model folder and everything needed to run it: the one entry point for CLI, server and tests. */
import { CausalLM } from "./causalLm";
import { defaultModelDir, ModelFolder, openModelFolder, OpenOptions } from "./modelFolder";
import { OnnxDecoder, OnnxDecoderOptions } from "./onnxDecoder";
import { TextTokenizer } from "./tokenizer";

export interface LoadedModel {
  folder: ModelFolder;
  tokenizer: TextTokenizer;
  lm: CausalLM;
}

export async function loadModel(dir?: string, options: OpenOptions & OnnxDecoderOptions = {}): Promise<LoadedModel> {
  const folder = openModelFolder(dir ?? defaultModelDir(), options);
  const tokenizer = TextTokenizer.fromFolder(folder);
  const lm = await OnnxDecoder.load(folder, options);
  return { folder, tokenizer, lm };
}
