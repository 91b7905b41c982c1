/**
 * The portable twist file: one JSON document with the head's parameters (float32, base64) and the
 * metadata that makes it safe to use: the base model it belongs to (a fingerprint checked on load),
 * its dimensions, and how it was trained (loss, data, flags, metrics).
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { ModelFolder } from "../lm/model/modelFolder";
import { writeFileAtomic } from "../util/atomicWrite";
import { CONFIDENCE_FEATURES } from "../smc/twist";
import { TokenTwistHead, ValueTwistHead } from "./heads";
import { InputError } from "../util/errors";
import { isFinalPower, isKnownAnswerFloor, LineVerifier, MAX_FINAL_POWER } from "./lineVerifier";
import { ResultMemory } from "./resultMemory";

export const TWIST_FORMAT = "twisted-smc-twist";

export class TwistFileError extends InputError {}

export interface TwistMeta {
  format: typeof TWIST_FORMAT;
  /**
   * 3: a line verifier with a final power (lineVerifier.ts, finalPower), which a release before it would
   * read as φ's own; 2: one with a result memory (resultMemory.ts), which a release before it would read
   * without the memory, its base rates set for one — each refuses the file instead; 1: everything else.
   */
  version: 1 | 2 | 3;
  kind: "token" | "step";
  baseModel: { name: string; fingerprint: string };
  hiddenSize: number;
  vocabSize: number;
  rank?: number;
  /** Step twists: the hidden-state value head (the default) or the line verifier. */
  architecture?: "value-head" | "line-verifier";
  /**
   * Line verifier: digit columns read per number, embedding width, hidden units, and digits read from the
   * column below (absent: 2, as files before the field).
   */
  verifier?: { columns: number; embedding: number; hidden: number; below?: 2 | 3 };
  created: string;
  /** How it was made: loss, data, flags. */
  training?: Record<string, unknown>;
  /** What it measured: final loss, accuracy… */
  metrics?: Record<string, unknown>;
}

export type TwistHead = TokenTwistHead | ValueTwistHead | LineVerifier;

export interface TwistFile {
  meta: TwistMeta;
  head: TwistHead;
}

/**
 * Identifies a base model cheaply even when its ONNX file is gigabytes: config and tokenizer in full,
 * the ONNX file's size and its first and last MiB.
 */
export function modelFingerprint(folder: ModelFolder): string {
  const h = createHash("sha256");
  h.update(JSON.stringify(folder.rawConfig));
  h.update(JSON.stringify(folder.tokenizerJson.model ?? {}));
  const size = statSync(folder.onnxPath).size;
  h.update(String(size));
  const fd = openSync(folder.onnxPath, "r");
  try {
    const chunk = Buffer.alloc(Math.min(1 << 20, size));
    readSync(fd, chunk, 0, chunk.length, 0);
    h.update(chunk);
    readSync(fd, chunk, 0, chunk.length, size - chunk.length);
    h.update(chunk);
  } finally {
    closeSync(fd);
  }
  return h.digest("hex").slice(0, 32);
}

const encode = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");

function decode(b64: unknown, length: number, what: string, path: string): Float32Array {
  if (typeof b64 !== "string") throw new TwistFileError(`${path}: parameter ${what} is missing`);
  const buf = Buffer.from(b64, "base64");
  if (buf.byteLength !== length * 4)
    throw new TwistFileError(
      `${path}: parameter ${what} has ${buf.byteLength} bytes, expected ${length * 4} (the file is corrupt or truncated)`,
    );
  const out = new Float32Array(length);
  new Uint8Array(out.buffer).set(buf);
  for (let i = 0; i < length; i++)
    if (!Number.isFinite(out[i])) throw new TwistFileError(`${path}: parameter ${what} holds a NaN or infinite value`);
  return out;
}

export function serializeTwist(
  head: TwistHead,
  meta: Omit<TwistMeta, "format" | "version" | "kind" | "hiddenSize" | "vocabSize" | "rank" | "architecture" | "verifier">,
): string {
  const doc =
    head instanceof LineVerifier
      ? {
          format: TWIST_FORMAT,
          version: head.p.finalPower !== undefined ? 3 : head.p.memory ? 2 : 1,
          kind: "step",
          architecture: "line-verifier",
          hiddenSize: 0,
          vocabSize: 0,
          verifier: {
            columns: head.p.columns,
            embedding: head.p.embedding,
            hidden: head.p.hidden,
            ...(head.p.below === 3 && { below: 3 }),
          },
          ...meta,
          params: {
            ...Object.fromEntries(LineVerifier.paramNames.map((k) => [k, encode(head.p[k])])),
            ...(head.p.memory && { memory: head.p.memory.toDocument() }),
            ...(head.p.finalPower !== undefined && { finalPower: head.p.finalPower }),
            // A release without it reads the file and does without the floor: its bounds are only looser.
            ...(head.p.knownAnswerFloor !== undefined && { knownAnswerFloor: head.p.knownAnswerFloor }),
          },
        }
      : head instanceof TokenTwistHead
        ? {
            format: TWIST_FORMAT,
            version: 1,
            kind: "token",
            hiddenSize: head.p.hiddenSize,
            vocabSize: head.p.vocabSize,
            rank: head.p.rank,
            ...meta,
            params: { U: encode(head.p.U), W: encode(head.p.W), b: encode(head.p.b) },
          }
        : {
            format: TWIST_FORMAT,
            version: 1,
            kind: "step",
            hiddenSize: head.p.hiddenSize,
            vocabSize: 0,
            ...meta,
            params: { w: encode(head.p.w), u: encode(head.p.u), c: head.p.c[0] },
          };
  return JSON.stringify(doc);
}

export function saveTwist(path: string, head: TwistHead, meta: Parameters<typeof serializeTwist>[1]): void {
  writeFileAtomic(path, serializeTwist(head, meta) + "\n");
}

/** Reads and validates a twist file; with `folder`, also checks that it belongs to that model. */
export function loadTwist(path: string, folder?: ModelFolder): TwistFile {
  return parseTwist(readTwistDocument(path), path, folder);
}

/** A twist file's JSON document, unchecked; a missing or unreadable file is one TwistFileError line. */
export function readTwistDocument(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new TwistFileError(`twist file ${path} does not exist`);
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new TwistFileError(`twist file ${path} is not valid JSON (${(e as Error).message}): it may be corrupt or truncated`);
  }
}

/** Validates a parsed twist document (a file's, or the one inside a training checkpoint). */
export function parseTwist(doc: Record<string, unknown>, path: string, folder?: ModelFolder): TwistFile {
  if (doc?.format !== TWIST_FORMAT) throw new TwistFileError(`${path} is not a twist file (format "${String(doc?.format)}")`);
  if (doc.version !== 1 && doc.version !== 2 && doc.version !== 3)
    throw new TwistFileError(
      `${path}: twist file version ${String(doc.version)} is not supported (a later release of Twisted SMC wrote it)`,
    );
  const meta = doc as unknown as TwistMeta;
  const params = (doc.params ?? {}) as Record<string, unknown>;
  const H = meta.hiddenSize;
  const readsHidden = meta.architecture !== "line-verifier";
  if (readsHidden && (!Number.isInteger(H) || H <= 0)) throw new TwistFileError(`${path}: hiddenSize is missing or invalid`);
  if (folder) {
    const fp = modelFingerprint(folder);
    if (meta.baseModel?.fingerprint !== fp) {
      throw new TwistFileError(
        `twist ${path} was trained for model "${meta.baseModel?.name}" (fingerprint ${meta.baseModel?.fingerprint}), ` +
          `not for ${folder.dir} (fingerprint ${fp}); train a twist for this model or pass --twist none`,
      );
    }
  }
  let head: TwistHead;
  if (meta.kind === "token") {
    const V = meta.vocabSize,
      R = meta.rank ?? 0;
    if (!Number.isInteger(V) || V <= 0 || !Number.isInteger(R) || R <= 0)
      throw new TwistFileError(`${path}: vocabSize or rank is missing or invalid`);
    head = new TokenTwistHead({
      hiddenSize: H,
      vocabSize: V,
      rank: R,
      U: decode(params.U, H * R, "U", path),
      W: decode(params.W, R * V, "W", path),
      b: decode(params.b, V, "b", path),
    });
  } else if (meta.kind === "step" && meta.architecture === "line-verifier") {
    head = parseLineVerifier(meta, params, path);
  } else if (meta.kind === "step") {
    if (typeof params.c !== "number" || !Number.isFinite(params.c))
      throw new TwistFileError(`${path}: parameter c is missing or not finite`);
    head = new ValueTwistHead({
      hiddenSize: H,
      w: decode(params.w, H, "w", path),
      u: decode(params.u, CONFIDENCE_FEATURES, "u", path),
      c: Float32Array.of(params.c),
    });
  } else {
    throw new TwistFileError(`${path}: unknown twist kind "${String(meta.kind)}"`);
  }
  delete (meta as unknown as Record<string, unknown>).params;
  return { meta, head };
}

function parseLineVerifier(meta: TwistMeta, params: Record<string, unknown>, path: string): LineVerifier {
  const { columns, embedding, hidden, below } = meta.verifier ?? { columns: 0, embedding: 0, hidden: 0 };
  const ok = (x: number) => Number.isInteger(x) && x >= 1 && x <= 1024;
  if (!ok(columns) || !ok(embedding) || !ok(hidden))
    throw new TwistFileError(`${path}: the line verifier's columns, embedding or hidden size is missing or invalid`);
  if (below !== undefined && below !== 2 && below !== 3)
    throw new TwistFileError(`${path}: the line verifier's "below" must be 2 or 3, got ${JSON.stringify(below)}`);
  const sizes = LineVerifier.sizes(columns, embedding, hidden, below);
  const p = Object.fromEntries(LineVerifier.paramNames.map((k) => [k, decode(params[k], sizes[k], k, path)])) as unknown as Pick<
    ConstructorParameters<typeof LineVerifier>[0],
    (typeof LineVerifier.paramNames)[number]
  >;
  let memory: ResultMemory | undefined;
  if (params.memory !== undefined)
    try {
      memory = ResultMemory.fromDocument(params.memory, columns);
    } catch (e) {
      throw new TwistFileError(`${path}: ${(e as Error).message}`);
    }
  const finalPower = params.finalPower;
  if (finalPower !== undefined && !isFinalPower(finalPower))
    throw new TwistFileError(
      `${path}: the line verifier's finalPower must be a number in (0, ${MAX_FINAL_POWER}], got ${JSON.stringify(finalPower)}`,
    );
  const knownAnswerFloor = params.knownAnswerFloor;
  if (knownAnswerFloor !== undefined && !isKnownAnswerFloor(knownAnswerFloor))
    throw new TwistFileError(
      `${path}: the line verifier's knownAnswerFloor must be a number in (0, 1), got ${JSON.stringify(knownAnswerFloor)}`,
    );
  return new LineVerifier({
    columns,
    embedding,
    hidden,
    ...(below === 3 && { below }),
    ...p,
    ...(memory && { memory }),
    ...(finalPower !== undefined && { finalPower }),
    ...(knownAnswerFloor !== undefined && { knownAnswerFloor }),
  });
}

/** The twist a model folder ships for a level, if any: twist-token.json / twist-step.json. */
export function shippedTwistPath(folder: Pick<ModelFolder, "dir">, level: "token" | "step"): string | undefined {
  const p = join(folder.dir, `twist-${level}.json`);
  return existsSync(p) ? p : undefined;
}
