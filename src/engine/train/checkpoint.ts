/**
 * Training checkpoints: the twist, the optimiser state and where training stands, in one file written
 * atomically, so a kill at any moment leaves the previous checkpoint intact and --resume continues
 * exactly as an uninterrupted run would.
 */
import { existsSync, readFileSync } from "node:fs";
import { ModelFolder } from "../lm/modelFolder";
import { AdamState } from "../twist/adam";
import { parseTwist, serializeTwist, TwistFile, TwistHead, TwistMeta } from "../twist/twistFile";
import { writeFileAtomic } from "../util/atomicWrite";
import { InputError } from "../util/errors";

export const CHECKPOINT_FORMAT = "twisted-smc-checkpoint";

export class CheckpointError extends InputError {}

export interface Progress {
  epoch: number;
  /** Next batch within the epoch. */
  batch: number;
  batchesDone: number;
  /** Lines of metrics.jsonl that belong to this state. */
  metricsLines: number;
}

export interface Checkpoint {
  /** The settings that determine the result; a resume must match them. */
  settings: Record<string, unknown>;
  progress: Progress;
  twist: TwistFile;
  adam: AdamState;
}

const f64 = (a: Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");

function unf64(s: unknown, length: number, path: string): Float64Array {
  if (typeof s !== "string") throw new CheckpointError(`${path}: optimiser state is missing`);
  const buf = Buffer.from(s, "base64");
  if (buf.byteLength !== length * 8) throw new CheckpointError(`${path}: optimiser state has the wrong size (the checkpoint is corrupt)`);
  const out = new Float64Array(length);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

export function saveCheckpoint(path: string, settings: Record<string, unknown>, progress: Progress, head: TwistHead, meta: Omit<TwistMeta, "format" | "version" | "kind" | "hiddenSize" | "vocabSize" | "rank">, adam: AdamState): void {
  const doc = {
    format: CHECKPOINT_FORMAT,
    version: 1,
    settings,
    progress,
    twist: JSON.parse(serializeTwist(head, meta)),
    adam: { t: adam.t, m: adam.m.map(f64), v: adam.v.map(f64) },
  };
  writeFileAtomic(path, JSON.stringify(doc) + "\n");
}

export function loadCheckpoint(path: string, folder: ModelFolder): Checkpoint | undefined {
  if (!existsSync(path)) return undefined;
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CheckpointError(`checkpoint ${path} is not valid JSON (${(e as Error).message}): it is corrupt; delete it to start over`);
  }
  if (doc.format !== CHECKPOINT_FORMAT || doc.version !== 1) throw new CheckpointError(`${path} is not a twisted-smc checkpoint`);
  const twist = parseTwist(doc.twist as Record<string, unknown>, path, folder);
  const adam = doc.adam as { t: number; m: unknown[]; v: unknown[] };
  const params = twist.head.parameters();
  if (!adam || !Array.isArray(adam.m) || adam.m.length !== params.length) throw new CheckpointError(`${path}: optimiser state is missing or does not match the twist`);
  return {
    settings: doc.settings as Record<string, unknown>,
    progress: doc.progress as Progress,
    twist,
    adam: { t: adam.t, m: params.map((p, i) => unf64(adam.m[i], p.length, path)), v: params.map((p, i) => unf64(adam.v[i], p.length, path)) },
  };
}
