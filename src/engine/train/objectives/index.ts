/**
 * The twist-learning objectives by their `--loss` names: each, in its own file, makes its head, gathers
 * its data from a problem and computes its gradient (objective.ts says how).
 */
import { bce } from "./bce";
import { ctl } from "./ctl";
import { TwistObjective } from "./objective";
import { prm } from "./prm";

/**
 * ctl: contrastive twist learning (token or step); bce: value regression of the hidden-state value head
 * (step); prm: the line verifier on outcome-mined line labels (step, or token: read digit by digit,
 * twist/digitTwist.ts). In this order in messages.
 */
export const OBJECTIVES = { ctl, bce, prm } satisfies Record<string, TwistObjective>;

export type TwistLoss = keyof typeof OBJECTIVES;

/** The `--loss` names. */
export const TWIST_LOSSES = Object.keys(OBJECTIVES) as TwistLoss[];

/** The objective of a `--loss` name (the objective with its head and data types erased). */
export function objectiveFor(loss: TwistLoss): TwistObjective {
  return OBJECTIVES[loss];
}

export type { HeadOptions, ObjectiveResult, TwistObjective } from "./objective";
export { bceStepGradient } from "./bce";
export { ctlStepGradient, ctlTokenGradient } from "./ctl";
export { prmGradient, VERIFIER_COLUMNS } from "./prm";
