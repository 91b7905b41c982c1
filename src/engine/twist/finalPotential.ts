/**
 * The final potential a twist asks for when a solution's answer is unknown (solve, eval's votes): a line
 * verifier's φ^γ (lineVerifier.ts, finalPower), read at either level — a digit twist ends on its
 * verifier's φ, so both levels weigh a finished solution alike. Undefined where the twist has no final
 * power other than 1: SMC then ends on the twist's own value, as it always has.
 */
import type { StepTwist, TokenTwist, Twist } from "../smc/twist";
import { DigitTwist } from "./digitTwist";
import { answerDigits, KnownAnswerDigitTwist, KnownAnswerLineTwist } from "./knownAnswer";
import { LineVerifier } from "./lineVerifier";

/** The line verifier a twist ends its lines with: itself, a digit twist's, or none. */
export const lineVerifierOf = (twist: Twist | undefined): LineVerifier | undefined =>
  twist instanceof DigitTwist ? twist.verifier : twist instanceof LineVerifier ? twist : undefined;

export function unknownAnswerPotential(twist: Twist | undefined): ((text: string) => number) | undefined {
  const verifier = lineVerifierOf(twist);
  const power = verifier?.p.finalPower ?? 1;
  if (!verifier || power === 1) return undefined;
  // At token level SMC asks this of every particle that may end, at every step: the digit twist reads a
  // text closed by "\n" as the verifier does, line by line, from the lines it has already read.
  if (twist instanceof DigitTwist) return (text) => power * twist.logValueOfText(text.endsWith("\n") ? text : `${text}\n`);
  return (text) => verifier.finalLogValue(text);
}

/**
 * The twist for a known answer (eval's log Ẑ bounds, solve --gold): a line verifier or digit twist read
 * with its known-answer floor (lineVerifier.ts, knownAnswerFloor) and, given the answer, reading it too
 * (knownAnswer.ts: ψ = 1 once a result equal to the answer is written; at token level the last line's
 * digits are steered toward the answer's); any other twist as it is. When the answer is known the final
 * potential is the answer itself, which a line that does not hold does not settle, so the twist's
 * estimate of it keeps a floor under each line. A twist already read so is read again cheaply (its
 * caches kept), so eval floors once and adds each problem's answer.
 */
export function knownAnswerTwist(twist: TokenTwist, answer?: number): TokenTwist;
export function knownAnswerTwist(twist: StepTwist, answer?: number): StepTwist;
export function knownAnswerTwist(twist: TokenTwist | StepTwist, answer?: number): TokenTwist | StepTwist;
export function knownAnswerTwist(twist: Twist | undefined, answer?: number): Twist | undefined;
export function knownAnswerTwist(twist: Twist | undefined, answer?: number): Twist | undefined {
  const floored = twist instanceof DigitTwist || twist instanceof LineVerifier ? twist.forKnownAnswer() : twist;
  const digits = answer === undefined ? undefined : answerDigits(answer);
  if (digits === undefined) return floored;
  if (floored instanceof DigitTwist) return new KnownAnswerDigitTwist(floored, digits);
  if (floored instanceof LineVerifier) return new KnownAnswerLineTwist(floored, digits);
  return floored;
}
