/**
 * The digit twist's file: the line verifier's twist document (as twist-step.json holds it, checked
 * against the base model as any twist file is) and the result lengths learned beside it
 * (resultLengths.ts). A plain line-verifier file is a digit twist too, without lengths.
 */
import { readFileSync } from "node:fs";
import { ModelFolder } from "../lm/model/modelFolder";
import { writeFileAtomic } from "../util/atomicWrite";
import { DigitTwist } from "./digitTwist";
import { LineVerifier } from "./lineVerifier";
import { ResultLengthTable } from "./resultLengths";
import { parseTwist, readTwistDocument, TWIST_FORMAT, TwistFileError } from "./twistFile";

export const DIGIT_TWIST_FORMAT = "twisted-smc-digit-twist";

export interface DigitTwistDoc {
  format: typeof DIGIT_TWIST_FORMAT;
  version: 1;
  created: string;
  /** The line verifier's twist document. */
  verifier: Record<string, unknown>;
  resultLengths: unknown;
  /** How the lengths were learned. */
  training?: Record<string, unknown>;
}

export function saveDigitTwist(path: string, verifierPath: string, table: ResultLengthTable, training?: Record<string, unknown>): void {
  const doc: DigitTwistDoc = {
    format: DIGIT_TWIST_FORMAT,
    version: 1,
    created: new Date().toISOString(),
    verifier: JSON.parse(readFileSync(verifierPath, "utf8")),
    resultLengths: table.toJSON(),
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
  if (doc.version !== 1) throw new TwistFileError(`${path}: digit twist version ${String(doc.version)} is not supported`);
  const verifier = doc.verifier as Record<string, unknown> | undefined;
  if (verifier?.architecture !== "line-verifier") throw new TwistFileError(`${path}: the digit twist holds no line verifier`);
  const { head } = parseTwist(verifier, path, folder);
  let lengths: ResultLengthTable;
  try {
    lengths = ResultLengthTable.fromJSON(doc.resultLengths);
  } catch (e) {
    throw new TwistFileError(`${path}: ${(e as Error).message}`);
  }
  return new DigitTwist(head as LineVerifier, vocabSize, lengths);
}
