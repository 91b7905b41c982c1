/** Resolves `--twist FILE|none` (default: the model folder's shipped twist for the level, if any). */
import { resolve } from "node:path";
import { LoadedModel } from "../lm/model/loadModel";
import { TokenizerFolder } from "../lm/model/modelFolder";
import { Twist } from "../smc/twist";
import { UsageError } from "../util/options";
import { loadDigitTwist, loadTwistOrVerifier } from "./digitTwistFile";
import { runnableTwist } from "./onnxTwist";
import { shippedTwistPath, TwistFile, TwistFileError } from "./twistFile";

export async function loadTwistOption(
  option: string | undefined,
  model: LoadedModel,
  level: "token" | "step",
): Promise<{ twist: Twist; name: string } | undefined> {
  // At token level a digit-twist file (given, or the folder's twist-token.json), or a line verifier
  // given for it, steers digit by digit (digitTwist.ts), as in eval.
  if (level === "token" && option !== "none") {
    const path = option === undefined ? shippedTwistPath(model.folder, "token") : resolve(option);
    const digits = path ? loadDigitTwist(path, model.lm.vocabSize, model.folder) : undefined;
    if (digits && path) return { twist: digits, name: path };
  }
  const found = findTwist(option, model.folder, level, (path) => loadTwistOrVerifier(path, model.folder));
  return found && { twist: await runnableTwist(found.head), name: found.path };
}

/**
 * `--twist` for a model on an inference server: only a twist that reads text can steer it (the line
 * verifier); one that reads hidden states is refused with one line, never dropped. The base-model
 * fingerprint is not checked: it hashes the ONNX file, which a served model has not here, and a twist
 * that reads text reads any model's text.
 */
export async function loadRemoteTwistOption(
  option: string | undefined,
  folder: Pick<TokenizerFolder, "dir">,
  level: "token" | "step",
): Promise<{ twist: Twist; name: string } | undefined> {
  const found = findTwist(option, folder, level, (path) => loadTwistOrVerifier(path));
  if (!found) return undefined;
  if (found.meta.architecture !== "line-verifier")
    throw new UsageError(
      `twist ${found.path} reads the model's hidden states, which a completions server does not return: pass a line-verifier twist (train --objective prm) or --twist none`,
    );
  return { twist: await runnableTwist(found.head), name: found.path };
}

/** The twist file the option names (or the folder's shipped one for the level), loaded and checked for the level. */
function findTwist(
  option: string | undefined,
  folder: Pick<TokenizerFolder, "dir">,
  level: "token" | "step",
  load: (path: string) => TwistFile,
): (TwistFile & { path: string }) | undefined {
  if (option === "none") return undefined;
  const path = option === undefined ? shippedTwistPath(folder, level) : resolve(option);
  if (!path) return undefined;
  const file = load(path);
  if (file.meta.kind !== level) {
    const hint = `a ${file.meta.kind}-level twist cannot steer --level ${level}: pass --level ${file.meta.kind} or another twist`;
    throw option === undefined ? new TwistFileError(`${path}: ${hint}`) : new UsageError(hint);
  }
  return { ...file, path };
}
