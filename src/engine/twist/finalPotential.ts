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
  if (!verifier || (verifier.p.finalPower ?? 1) === 1) return undefined;
  return (text) => verifier.finalLogValue(text);
}
