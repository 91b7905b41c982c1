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
import { LineVerifier } from "./lineVerifier";
import { PartialResultHead } from "./partialResults";
import { ResultLengthTable } from "./resultLengths";
import { parseTwist, readTwistDocument, serializeTwist, TWIST_FORMAT, TwistFileError, TwistMeta } from "./twistFile";

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
  const created = new Date().toISOString();
  const doc: DigitTwistDoc = {
    format: DIGIT_TWIST_FORMAT,
    version: partial ? 2 : 1,
    created,
    verifier: verifier as unknown as Record<string, unknown>,
    resultLengths: table.toJSON(),
    // The head belongs to the verifier's base model: it carries the same fingerprint.
    partial: partial && JSON.parse(serializeTwist(partial.net, { baseModel: verifier.baseModel, created, training })),
    training,
  };
  writeFileAtomic(path, JSON.stringify(doc) + "\n");
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
    return new DigitTwist(head as LineVerifier, vocabSize);
  }
  if (doc?.format !== DIGIT_TWIST_FORMAT) return undefined;
  if (doc.version !== 1 && doc.version !== 2)
    throw new TwistFileError(`${path}: digit twist version ${String(doc.version)} is not supported`);
  const verifier = doc.verifier as Record<string, unknown> | undefined;
  if (verifier?.architecture !== "line-verifier") throw new TwistFileError(`${path}: the digit twist holds no line verifier`);
  const { head } = parseTwist(verifier, path, folder);
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
    if (partial.columns !== (head as LineVerifier).p.columns)
      throw new TwistFileError(`${path}: the partial-result head and the verifier read different columns`);
  }
  return new DigitTwist(head as LineVerifier, vocabSize, lengths, partial);
}
