/** The decoder interface a loaded graph must have (inputs, outputs, KV cache layout), checked against its folder. */
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { FloatType } from "./kvCache";
import { ModelFolder, ModelFolderError } from "../model/modelFolder";
import { SEQLENS_K, TOTAL_SEQUENCE_LENGTH } from "../onnx/fuseAttention";
import { HIDDEN_OUTPUT } from "../onnx/prepareGraph";
import { STEP_INPUT } from "../onnx/packStepInputs";
import { SAMPLE_DRAWS, SAMPLE_UNIFORM } from "../onnx/samplingHead";

/**
 * Checks the session's inputs and outputs against the decoder interface; names what is missing.
 * `packed`: the inputs a fixed-capacity graph takes packed in STEP_INPUT (packStepInputs.ts).
 */
export function checkInterface(session: ort.InferenceSession, folder: ModelFolder, fixedCapacity: boolean, packed: readonly string[] = []) {
  const file = folder.onnxPath;
  const inputs = new Set(session.inputNames);
  const outputs = new Set(session.outputNames);
  const need = (set: Set<string>, name: string, kind: string) => {
    if (!set.has(name))
      throw new ModelFolderError(`${file} lacks the ${kind} "${name}" of the decoder interface (has: ${[...set].join(", ")})`);
  };
  const own = (name: string) => inputs.has(name) || packed.includes(name);
  if (packed.length) need(inputs, STEP_INPUT, "input");
  else need(inputs, "input_ids", "input");
  for (const name of fixedCapacity ? [SEQLENS_K, TOTAL_SEQUENCE_LENGTH] : ["attention_mask"]) if (!own(name)) need(inputs, name, "input");
  need(outputs, "logits", "output");
  // Logits read with config.json's vocabulary size from a graph of another one would be garbage (NaN, or wrong tokens).
  const logits = session.outputMetadata.find((m) => m.name === "logits");
  const graphVocab = logits?.isTensor ? logits.shape[logits.shape.length - 1] : undefined;
  if (typeof graphVocab === "number" && graphVocab !== folder.config.vocabSize) {
    throw new ModelFolderError(
      `${file} has logits over ${graphVocab} tokens but ${join(folder.dir, "config.json")} says vocab_size ${folder.config.vocabSize}: the graph and config.json do not belong together`,
    );
  }
  const layers = [...inputs].filter((n) => /^past_key_values\.\d+\.key$/.test(n)).length;
  if (layers !== folder.config.numLayers) {
    throw new ModelFolderError(
      `${file} has ${layers} past_key_values layers but config.json says num_hidden_layers ${folder.config.numLayers}`,
    );
  }
  for (let i = 0; i < layers; i++) {
    for (const kv of ["key", "value"]) {
      need(inputs, `past_key_values.${i}.${kv}`, "input");
      need(outputs, `present.${i}.${kv}`, "output");
    }
  }
  const meta = session.inputMetadata.find((m) => m.name === "past_key_values.0.key");
  const kvType = meta && meta.isTensor ? meta.type : "float32";
  if (kvType !== "float32" && kvType !== "float16") throw new ModelFolderError(`${file}: unsupported KV cache type ${kvType}`);
  if (meta && meta.isTensor) {
    const [, heads, , dim] = meta.shape;
    if ((typeof heads === "number" && heads !== folder.config.numKvHeads) || (typeof dim === "number" && dim !== folder.config.headDim)) {
      throw new ModelFolderError(
        `${file}: KV cache shape [*, ${heads}, *, ${dim}] disagrees with config.json (${folder.config.numKvHeads} KV heads of ${folder.config.headDim})`,
      );
    }
  }
  return {
    kvType: kvType as FloatType,
    hasPositionIds: own("position_ids"),
    hasHidden: outputs.has(HIDDEN_OUTPUT),
    hasSampler: own(SAMPLE_UNIFORM) && outputs.has(SAMPLE_DRAWS),
  };
}
