/**
 * The digit twist as the trainer holds it (`train --twist token --loss prm`): the three things the
 * token level reads a line with, learned together from the same samples —
 * - the line verifier (lineVerifier.ts), the value at every line's end (φ, the step level's too);
 * - the partial-result head (partialResults.ts), the value while a result is being written;
 * - the result lengths (resultLengths.ts), which column a digit being written will stand in.
 * The two networks are the trainable parameters (the verifier's first, then the head's); the lengths
 * are counts, kept beside them and saved with them, so a resumed run counts on from where it stopped.
 */
import { DigitTwist } from "./digitTwist";
import { LineVerifier } from "./lineVerifier";
import { PartialResultHead } from "./partialResults";
import { ResultLengthTable } from "./resultLengths";
import type { TwistHead } from "./twistFile";

export class DigitTwistHead {
  constructor(
    readonly verifier: LineVerifier,
    readonly partial: PartialResultHead,
    readonly lengths: ResultLengthTable,
  ) {
    if (partial.columns !== verifier.p.columns)
      throw new Error("digit twist: the partial-result head and the verifier read different columns");
  }

  /** The verifier's arrays, then the head's: the optimiser's and the gradient's order. */
  parameters(): Float32Array[] {
    return [...this.verifier.parameters(), ...this.partial.net.parameters()];
  }

  /**
   * The token-level twist these parts make. It caches values per line, so it is made afresh after the
   * parameters change.
   */
  twist(vocabSize: number): DigitTwist {
    return new DigitTwist(this.verifier, vocabSize, this.lengths, this.partial);
  }
}

/** Every head the trainer can hold: a twist file's, or the digit twist's parts (saved as a digit-twist file). */
export type TrainableHead = TwistHead | DigitTwistHead;
