/**
 * The final potential a twist asks for when a solution's answer is unknown (solve, eval's votes): a line
 * verifier's φ^γ (lineVerifier.ts, finalPower), read at either level — a digit twist ends on its
 * verifier's φ, so both levels weigh a finished solution alike. Undefined where the twist has no final
 * power other than 1: SMC then ends on the twist's own value, as it always has.
 */
import type { Twist } from "../smc/twist";
import { DigitTwist } from "./digitTwist";
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
 * with its known-answer floor (lineVerifier.ts, knownAnswerFloor); any other twist, or one without a
 * floor, as it is. When the answer is known the final potential is the answer itself, which a line that
 * does not hold does not settle, so the twist's estimate of it keeps a floor under each line.
 */
export function knownAnswerTwist<T extends Twist | undefined>(twist: T): T {
  if (twist instanceof DigitTwist || twist instanceof LineVerifier) return twist.forKnownAnswer() as unknown as T;
  return twist;
}
