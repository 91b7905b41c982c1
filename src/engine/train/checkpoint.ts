/**
 * Training checkpoints: the twist, the optimiser state and where training stands, in one file written
 * atomically, so a kill at any moment leaves the previous checkpoint intact and --resume continues
 * exactly as an uninterrupted run would.
 */
import { existsSync, readFileSync } from "node:fs";
import { ModelFolder } from "../lm/model/modelFolder";
import { AdamState } from "../twist/adam";
import { modelFingerprint, parseTwist, serializeTwist, TwistFileError, TwistMeta } from "../twist/twistFile";
import { DigitTwistHead, TrainableHead } from "../twist/digitTwistHead";
import { DIGIT_TWIST_FORMAT, parseDigitTwistDocument, serializeDigitTwist } from "../twist/digitTwistFile";
import { writeFileAtomic } from "../util/atomicWrite";
import { InputError } from "../util/errors";
import { SampleOutcomes } from "./samples";

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
  twist: TrainedTwist;
  adam: AdamState;
  /** With --replay: the latest problems' samples, oldest first. */
  replay?: SampleOutcomes[];
}

/** The head a checkpoint holds and its metadata (a digit twist's: its verifier's). */
export interface TrainedTwist {
  meta: TwistMeta;
  head: TrainableHead;
}

type Meta = Omit<TwistMeta, "format" | "version" | "kind" | "hiddenSize" | "vocabSize" | "rank">;

/** A trained head as its file holds it: a twist file, or a digit-twist file for the digit twist's parts. */
export function serializeTrainedHead(head: TrainableHead, meta: Meta): string {
  return head instanceof DigitTwistHead ? serializeDigitTwist(head, meta) : serializeTwist(head, meta);
}

function parseTrainedHead(doc: Record<string, unknown>, path: string): TrainedTwist {
  if (doc.format !== DIGIT_TWIST_FORMAT) return parseTwist(doc, path);
  const { meta, verifier, partial, lengths } = parseDigitTwistDocument(doc, path);
  if (!partial) throw new TwistFileError(`${path}: the digit twist holds no partial-result head`);
  return { meta, head: new DigitTwistHead(verifier, partial, lengths) };
}

const f64 = (a: Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");

export function saveCheckpoint(
  path: string,
  settings: Record<string, unknown>,
  progress: Progress,
  head: TrainableHead,
  meta: Meta,
  adam: AdamState,
  replay?: readonly SampleOutcomes[],
): void {
  const doc = {
    format: CHECKPOINT_FORMAT,
    version: 1,
    settings,
    progress,
    twist: JSON.parse(serializeTrainedHead(head, meta)),
    adam: { t: adam.t, m: adam.m.map(f64), v: adam.v.map(f64) },
    ...(replay && { replay }),
  };
  writeFileAtomic(path, JSON.stringify(doc) + "\n");
}

/** The checkpoint in `path`, checked field by field; undefined when there is none. */
export function loadCheckpoint(path: string, folder: ModelFolder): Checkpoint | undefined {
  if (!existsSync(path)) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CheckpointError(`checkpoint ${path} is not valid JSON (${(e as Error).message}): it is corrupt; delete it to start over`);
  }
  return parseCheckpoint(doc, path, folder);
}

/**
 * Checks every field before training trusts it: a progress of null once resumed "after batch null"
 * and trained nothing, and a missing one restarted from batch 0 with the old weights.
 */
function parseCheckpoint(doc: unknown, path: string, folder: ModelFolder): Checkpoint {
  const field = fieldReader(path);
  if (!isObject(doc) || doc.format !== CHECKPOINT_FORMAT)
    throw new CheckpointError(`${path}: not a twisted-smc checkpoint (its format is ${show(isObject(doc) ? doc.format : doc)})`);
  if (typeof doc.version === "number" && doc.version > 1)
    throw new CheckpointError(
      `${path}: version ${doc.version} is newer than this twisted-smc reads (1): it was written by a later release`,
    );
  field.check("version", doc.version, "1", (v) => v === 1);
  const settings = field.object("settings", doc.settings);
  const p = field.object("progress", doc.progress);
  const progress: Progress = {
    epoch: field.count("progress.epoch", p.epoch),
    batch: field.count("progress.batch", p.batch),
    batchesDone: field.count("progress.batchesDone", p.batchesDone),
    metricsLines: field.count("progress.metricsLines", p.metricsLines),
  };
  let twist: TrainedTwist;
  try {
    // Its model is checked below, with advice that fits a checkpoint.
    twist = parseTrainedHead(field.object("twist", doc.twist), `${path}: twist`);
  } catch (e) {
    // The twist's own checks, told as the checkpoint's (exit code and wording alike).
    throw e instanceof TwistFileError ? new CheckpointError(e.message) : e;
  }
  const base = twist.meta.baseModel;
  if (base?.fingerprint !== modelFingerprint(folder)) {
    throw new CheckpointError(
      `${path} was made for another model ("${base?.name}", fingerprint ${base?.fingerprint}), not ${folder.dir}: resume with that model, or choose another --output_dir`,
    );
  }
  const adam = field.object("adam", doc.adam);
  const sizes = twist.head.parameters().map((q) => q.length);
  return {
    settings,
    progress,
    twist,
    adam: { t: field.count("adam.t", adam.t), m: moments(field, "adam.m", adam.m, sizes), v: moments(field, "adam.v", adam.v, sizes) },
    ...(doc.replay !== undefined && { replay: replaySamples(field, doc.replay) }),
  };
}

/** The replay pool: per problem, its sample texts and whether each is right, as many of one as of the other. */
function replaySamples(field: FieldReader, value: unknown): SampleOutcomes[] {
  const list = field.check("replay", value, "an array", Array.isArray) as unknown[];
  return list.map((entry, i) => {
    const at = `replay[${i}]`;
    const e = field.object(at, entry);
    const texts = field.check(
      `${at}.texts`,
      e.texts,
      "an array of strings",
      (v) => Array.isArray(v) && v.every((t) => typeof t === "string"),
    );
    field.check(
      `${at}.correct`,
      e.correct,
      `an array of ${(texts as string[]).length} booleans (one per text)`,
      (v) => Array.isArray(v) && v.length === (texts as string[]).length && v.every((b) => typeof b === "boolean"),
    );
    return { texts: e.texts as string[], correct: e.correct as boolean[] };
  });
}

/** One Adam moment: a base64 float64 array per twist parameter, of that parameter's size. */
function moments(field: FieldReader, name: string, value: unknown, sizes: number[]): Float64Array[] {
  const list = field.check(
    name,
    value,
    `an array of ${sizes.length} entries (one per twist parameter)`,
    (v) => Array.isArray(v) && v.length === sizes.length,
    (v) => (Array.isArray(v) ? `${v.length}` : show(v)),
  ) as unknown[];
  return sizes.map((n, i) => {
    const at = `${name}[${i}]`;
    const bytes = field.check(
      at,
      list[i],
      `${n} float64 values in base64`,
      (v) => typeof v === "string" && Buffer.from(v, "base64").byteLength === n * 8,
      (v) => (typeof v === "string" ? `${Buffer.from(v, "base64").byteLength} bytes` : show(v)),
    );
    const out = new Float64Array(n);
    new Uint8Array(out.buffer).set(Buffer.from(bytes as string, "base64"));
    if (!out.every(Number.isFinite)) throw new CheckpointError(`${field.path}: ${at} holds a NaN or infinite value (${DAMAGED})`);
    return out;
  });
}

const DAMAGED = "the checkpoint is damaged; delete it to start over";

type FieldReader = ReturnType<typeof fieldReader>;

/** Checks of a checkpoint's fields whose errors name the file, the field, what it must be and what it is. */
function fieldReader(path: string) {
  const check = (
    name: string,
    value: unknown,
    wanted: string,
    ok: (v: unknown) => boolean,
    got: (v: unknown) => string = show,
  ): unknown => {
    if (value === undefined) throw new CheckpointError(`${path}: ${name} is missing (it must be ${wanted}; ${DAMAGED})`);
    if (!ok(value)) throw new CheckpointError(`${path}: ${name} must be ${wanted}, got ${got(value)} (${DAMAGED})`);
    return value;
  };
  return {
    path,
    check,
    object: (name: string, value: unknown) => check(name, value, "an object", isObject) as Record<string, unknown>,
    count: (name: string, value: unknown) =>
      check(name, value, "a non-negative integer", (v) => Number.isInteger(v) && (v as number) >= 0) as number,
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A value as JSON, cut short: enough to recognise it in one line. */
function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}
