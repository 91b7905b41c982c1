/**
 * The digit twist's file: the line verifier's twist document (as twist-step.json holds it, checked
 * against the base model as any twist file is), the result lengths learned beside it
 * (resultLengths.ts) and, from version 2, the partial-result head (partialResults.ts) as a
 * line-verifier twist document of its own. A plain line-verifier file is a digit twist too, without
 * lengths. A file with a head is version 2 so that a reader that knows no head refuses it rather than
 * reading it without one.
 */
import { readFileSync } from "node:fs";
import { ModelFolder } from "../lm/model/modelFolder";
import { writeFileAtomic } from "../util/atomicWrite";
import { DigitTwist } from "./digitTwist";
import { DigitTwistHead } from "./digitTwistHead";
import { LineVerifier } from "./lineVerifier";
import { PartialResultHead } from "./partialResults";
import { ResultLengthTable } from "./resultLengths";
import { parseTwist, readTwistDocument, serializeTwist, TWIST_FORMAT, TwistFile, TwistFileError, TwistMeta } from "./twistFile";

export const DIGIT_TWIST_FORMAT = "twisted-smc-digit-twist";

export interface DigitTwistDoc {
  format: typeof DIGIT_TWIST_FORMAT;
  version: 1 | 2;
  created: string;
  /** The line verifier's twist document. */
  verifier: Record<string, unknown>;
  resultLengths: unknown;
  /** Version 2: the partial-result head's network, as a line-verifier twist document. */
  partial?: Record<string, unknown>;
  /** How the lengths were learned. */
  training?: Record<string, unknown>;
}

export function saveDigitTwist(
  path: string,
  verifierPath: string,
  table: ResultLengthTable,
  training?: Record<string, unknown>,
  partial?: PartialResultHead,
): void {
  const verifier = JSON.parse(readFileSync(verifierPath, "utf8")) as TwistMeta;
  writeFileAtomic(
    path,
    JSON.stringify(digitTwistDocument(verifier as unknown as Record<string, unknown>, table, partial, training)) + "\n",
  );
}

type Meta = Parameters<typeof serializeTwist>[1];

/** A trained digit twist's document (the trainer's twist.json and checkpoints): its parts under one meta. */
export function serializeDigitTwist(head: DigitTwistHead, meta: Meta): string {
  const verifier = JSON.parse(serializeTwist(head.verifier, meta));
  return JSON.stringify(digitTwistDocument(verifier, head.lengths, head.partial, meta.training, meta.metrics));
}

export function saveDigitTwistHead(path: string, head: DigitTwistHead, meta: Meta): void {
  writeFileAtomic(path, serializeDigitTwist(head, meta) + "\n");
}

function digitTwistDocument(
  verifier: Record<string, unknown>,
  table: ResultLengthTable,
  partial: PartialResultHead | undefined,
  training?: Record<string, unknown>,
  metrics?: Record<string, unknown>,
): DigitTwistDoc {
  const created = new Date().toISOString();
  const baseModel = (verifier as unknown as TwistMeta).baseModel;
  return {
    format: DIGIT_TWIST_FORMAT,
    version: partial ? 2 : 1,
    created,
    verifier,
    resultLengths: table.toJSON(),
    // The head belongs to the verifier's base model: it carries the same fingerprint.
    partial: partial && JSON.parse(serializeTwist(partial.net, { baseModel, created, training, metrics })),
    training,
  };
}

/** What a digit-twist document holds, checked; the meta is its verifier's (base model, training). */
export interface DigitTwistParts {
  meta: TwistMeta;
  verifier: LineVerifier;
  lengths: ResultLengthTable;
  /** Version 2 only. */
  partial?: PartialResultHead;
}

/** Checks a digit-twist document (a file's, or the one inside a training checkpoint). */
export function parseDigitTwistDocument(doc: Record<string, unknown>, path: string, folder?: ModelFolder): DigitTwistParts {
  if (doc?.format !== DIGIT_TWIST_FORMAT) throw new TwistFileError(`${path} is not a digit-twist file (format "${String(doc?.format)}")`);
  if (doc.version !== 1 && doc.version !== 2)
    throw new TwistFileError(`${path}: digit twist version ${String(doc.version)} is not supported`);
  const verifierDoc = doc.verifier as Record<string, unknown> | undefined;
  if (verifierDoc?.architecture !== "line-verifier") throw new TwistFileError(`${path}: the digit twist holds no line verifier`);
  const { head, meta } = parseTwist(verifierDoc, path, folder);
  const verifier = head as LineVerifier;
  let lengths: ResultLengthTable;
  try {
    lengths = ResultLengthTable.fromJSON(doc.resultLengths);
  } catch (e) {
    throw new TwistFileError(`${path}: ${(e as Error).message}`);
  }
  let partial: PartialResultHead | undefined;
  if (doc.version === 2) {
    const net = doc.partial as Record<string, unknown> | undefined;
    if (net?.architecture !== "line-verifier") throw new TwistFileError(`${path}: the digit twist holds no partial-result head`);
    partial = new PartialResultHead(parseTwist(net, path, folder).head as LineVerifier);
    if (partial.columns !== verifier.p.columns)
      throw new TwistFileError(`${path}: the partial-result head and the verifier read different columns`);
  }
  return { meta, verifier, lengths, partial };
}

/**
 * The digit twist a file holds: a digit-twist file, or a line-verifier twist file read digit by digit;
 * undefined for any other twist file (the caller loads it as such). With `folder`, the verifier must
 * belong to that model.
 */
export function loadDigitTwist(path: string, vocabSize: number, folder?: ModelFolder): DigitTwist | undefined {
  const doc = readTwistDocument(path);
  if (doc?.format === TWIST_FORMAT) {
    if (doc.architecture !== "line-verifier") return undefined;
    const { head } = parseTwist(doc, path, folder);
    return new DigitTwist(readsOpen(head as LineVerifier, undefined, path), vocabSize);
  }
  if (doc?.format !== DIGIT_TWIST_FORMAT) return undefined;
  const { verifier, lengths, partial } = parseDigitTwistDocument(doc, path, folder);
  return new DigitTwist(readsOpen(verifier, partial, path), vocabSize, lengths, partial);
}

/**
 * A verifier alone reads a result while it is written by its best completion, column by column; one that
 * reads the result's digit below each column (below 3) ties the columns together, so it needs the
 * partial-result head for that.
 */
function readsOpen(verifier: LineVerifier, partial: PartialResultHead | undefined, path: string): LineVerifier {
  if (verifier.p.below === 3 && !partial)
    throw new TwistFileError(
      `${path}: this line verifier reads each column's result digit below it, so at token level it needs a partial-result head: pass a digit-twist file (train --twist token writes one, e.g. the model's twist-token.json)`,
    );
  return verifier;
}

/**
 * A twist file as the step level reads it: a digit-twist file (`train --twist token`'s twist.json, a
 * shipped twist-token.json) gives its line verifier, the φ its token level ends every line with.
 */
export function loadTwistOrVerifier(path: string, folder?: ModelFolder): TwistFile {
  const doc = readTwistDocument(path);
  if (doc?.format !== DIGIT_TWIST_FORMAT) return parseTwist(doc, path, folder);
  const { meta, verifier } = parseDigitTwistDocument(doc, path, folder);
  return { meta, head: verifier };
}
