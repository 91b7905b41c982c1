/** Shared pieces of the unit tests: the shipped model, loaded once per process. */
import { join } from "node:path";
import { loadModel, LoadedModel } from "../../src/engine/lm/loadModel";

export const MODEL_DIR = join(__dirname, "../../models/tiny-math-llama");

let shared: Promise<LoadedModel> | undefined;

/** The shipped model on one thread, so results and timings do not depend on the machine's cores. */
export function shippedModel(): Promise<LoadedModel> {
  shared ??= loadModel(MODEL_DIR, { threads: 1 });
  return shared;
}
