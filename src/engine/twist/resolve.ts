/** Resolves `--twist FILE|none` (default: the model folder's shipped twist for the level, if any). */
import { resolve } from "node:path";
import { LoadedModel } from "../lm/model/loadModel";
import { Twist } from "../smc/twist";
import { UsageError } from "../util/options";
import { runnableTwist } from "./onnxTwist";
import { loadTwist, shippedTwistPath, TwistFileError } from "./twistFile";

export async function loadTwistOption(
  option: string | undefined,
  model: LoadedModel,
  level: "token" | "step",
): Promise<{ twist: Twist; name: string } | undefined> {
  if (option === "none") return undefined;
  const path = option === undefined ? shippedTwistPath(model.folder, level) : resolve(option);
  if (!path) return undefined;
  const { head, meta } = loadTwist(path, model.folder);
  if (meta.kind !== level) {
    const hint = `a ${meta.kind}-level twist cannot steer --level ${level}: pass --level ${meta.kind} or another twist`;
    throw option === undefined ? new TwistFileError(`${path}: ${hint}`) : new UsageError(hint);
  }
  return { twist: await runnableTwist(head), name: path };
}
