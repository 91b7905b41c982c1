/**
 * The final potential a twist asks for when a solution's answer is unknown (solve, eval's votes): a line
 * verifier's φ^γ (lineVerifier.ts, finalPower), read at either level — a digit twist ends on its
 * verifier's φ, so both levels weigh a finished solution alike. Undefined where the twist has no final
 * power other than 1: SMC then ends on the twist's own value, as it always has.
 */
import type { Twist } from "../smc/twist";
import { DigitTwist } from "./digitTwist";
import { LineVerifier } from "./lineVerifier";

export function unknownAnswerPotential(twist: Twist | undefined): ((text: string) => number) | undefined {
  const verifier = twist instanceof DigitTwist ? twist.verifier : twist instanceof LineVerifier ? twist : undefined;
  const power = verifier?.p.finalPower ?? 1;
  if (!verifier || power === 1) return undefined;
  // At token level SMC asks this of every particle that may end, at every step: the digit twist reads a
  // text closed by "\n" as the verifier does, line by line, from the lines it has already read.
  if (twist instanceof DigitTwist) return (text) => power * twist.logValueOfText(text.endsWith("\n") ? text : `${text}\n`);
  return (text) => verifier.finalLogValue(text);
}
