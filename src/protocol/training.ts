/**
 * Training's progress as it crosses from the trainer (`twisted-smc train --progress json`) to the
 * editor's task terminal and loss curve: one JSON object a line, each line one of these. The editor
 * checks every line against them before it uses a field.
 */

/** One batch's numbers. */
export interface TrainBatchMetrics {
  epoch: number;
  batch: number;
  step: number;
  loss: number;
  reward: number;
  sampleAccuracy: number;
  ess: number;
  logZ: number;
  exactPositives: number;
  seconds: number;
}

/**
 * The work after the epochs, before the twist is written (prm): sampling problems, the line verifier's
 * refit on them, then (the digit twist) the partial-result head's training passes, with the loss after
 * each pass.
 */
export interface TrainFinishProgress {
  part: "sampling" | "verifier" | "training";
  done: number;
  total: number;
  loss?: number;
  seconds: number;
}

/** What each part of the work after the epochs is called, wherever its progress is shown (CLI, task terminal). */
export const FINISH_PART_NAMES: Record<TrainFinishProgress["part"], string> = {
  sampling: "after the epochs",
  verifier: "refitting the verifier",
  training: "fitting the partial-result head to the verifier",
};

/** How many problems after the run's its finish asked for, and how many the data held. */
export interface HeldOutProblems {
  asked: number;
  found: number;
}

/** The held-out problems in words, wherever the start of a run is shown (CLI, task terminal). */
export function heldOutLine({ asked, found }: HeldOutProblems): string {
  const none = "the verifier keeps its refit's base rates and reads no memory of results";
  if (asked === 0) return `held out: none (a run this small holds none out): ${none}`;
  if (found >= asked) return `held out: ${found} problems after these, for the verifier's base rates and memory weights`;
  return found === 0
    ? `held out: none of ${asked} (the data end with the run's problems): ${none}`
    : `held out: ${found} of ${asked} problems (the data end): the verifier's base rates and memory weights are set on fewer`;
}

export type TrainProgressLine =
  | {
      type: "start";
      problems: number;
      batchesPerEpoch: number;
      resumedAt?: number;
      skipped: string[];
      model: string;
      data: string;
      /** Where the model runs (absent from trainers before it was sent). */
      device?: string;
      /** Problems after the run's that its finish reads (prm: the verifier's base rates); absent for other objectives. */
      heldOut?: HeldOutProblems;
      config?: Record<string, unknown>;
    }
  | ({ type: "batch"; total: number } & TrainBatchMetrics)
  | { type: "checkpoint"; path: string }
  | ({ type: "finish" } & TrainFinishProgress)
  | { type: "end"; twistPath: string; batches: number; stopped: boolean; final?: TrainBatchMetrics };

const BATCH_FIELDS: readonly (keyof TrainBatchMetrics)[] = [
  "epoch",
  "batch",
  "step",
  "loss",
  "reward",
  "sampleAccuracy",
  "ess",
  "logZ",
  "exactPositives",
  "seconds",
];

const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isString = (v: unknown): v is string => typeof v === "string";
const isHeldOut = (v: unknown): v is HeldOutProblems =>
  typeof v === "object" && v !== null && isNumber((v as HeldOutProblems).asked) && isNumber((v as HeldOutProblems).found);

/** A line of the trainer's JSON progress, or undefined when it is not one (plain text, a broken line). */
export function parseTrainProgressLine(text: string): TrainProgressLine | undefined {
  if (!text.startsWith("{")) return undefined;
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof m !== "object" || m === null) return undefined;
  switch (m.type) {
    case "start":
      return isNumber(m.problems) &&
        isNumber(m.batchesPerEpoch) &&
        isString(m.model) &&
        isString(m.data) &&
        Array.isArray(m.skipped) &&
        m.skipped.every(isString) &&
        (m.resumedAt === undefined || isNumber(m.resumedAt)) &&
        (m.heldOut === undefined || isHeldOut(m.heldOut))
        ? (m as TrainProgressLine)
        : undefined;
    case "batch":
      return isNumber(m.total) && BATCH_FIELDS.every((f) => isNumber(m[f])) ? (m as TrainProgressLine) : undefined;
    case "checkpoint":
      return isString(m.path) ? (m as TrainProgressLine) : undefined;
    case "finish":
      return (m.part === "sampling" || m.part === "verifier" || m.part === "training") &&
        isNumber(m.done) &&
        isNumber(m.total) &&
        isNumber(m.seconds) &&
        (m.loss === undefined || isNumber(m.loss))
        ? (m as TrainProgressLine)
        : undefined;
    case "end":
      return isString(m.twistPath) && isNumber(m.batches) && typeof m.stopped === "boolean" ? (m as TrainProgressLine) : undefined;
    default:
      return undefined;
  }
}
