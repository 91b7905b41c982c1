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
 * refit on them, (the digit twist) the partial-result head's training passes, with the loss after each
 * pass, then SMC on held-out problems to choose the power solutions end on, with the power once chosen.
 */
export interface TrainFinishProgress {
  part: "sampling" | "verifier" | "training" | "power";
  done: number;
  total: number;
  loss?: number;
  /** The final power chosen (part "power", once done). */
  power?: number;
  seconds: number;
}

/** What each part of the work after the epochs is called, wherever its progress is shown (CLI, task terminal). */
export const FINISH_PART_NAMES: Record<TrainFinishProgress["part"], string> = {
  sampling: "after the epochs",
  verifier: "refitting the verifier",
  training: "fitting the partial-result head to the verifier",
  power: "choosing the final power",
};

const isFinishPart = (x: unknown): x is TrainFinishProgress["part"] => typeof x === "string" && Object.hasOwn(FINISH_PART_NAMES, x);

/** A part's progress in words, after its name (CLI, task terminal). */
export function finishProgressText(p: TrainFinishProgress): string {
  switch (p.part) {
    case "sampling":
      return `sampled ${p.done}/${p.total} problems ${p.seconds}s`;
    case "power":
      return p.power === undefined
        ? `SMC on ${p.done}/${p.total} held-out problems ${p.seconds}s`
        : `solutions end on φ^${p.power} when the answer is unknown (chosen on ${p.total} held-out problems) ${p.seconds}s`;
    default:
      return `pass ${p.done}/${p.total}${p.loss !== undefined ? ` loss ${p.loss.toFixed(4)}` : ""} ${p.seconds}s`;
  }
}

/** Whether a progress message is worth a line: the problem-by-problem parts every 100 problems and at their end. */
export function finishProgressShown(p: TrainFinishProgress): boolean {
  if (p.part === "sampling") return p.done % 100 === 0 || p.done === p.total;
  if (p.part === "power") return p.power !== undefined || (p.done % 100 === 0 && p.done !== p.total);
  return true;
}

/** How many problems after the run's its finish asked for, and how many the data held. */
export interface HeldOutProblems {
  asked: number;
  found: number;
}

/** The held-out problems in words, wherever the start of a run is shown (CLI, task terminal). */
export function heldOutLine({ asked, found }: HeldOutProblems): string {
  const none = "the verifier keeps its refit's base rates and reads no memory of results, and solutions end on φ as fitted";
  if (asked === 0) return `held out: none (a run this small holds none out): ${none}`;
  if (found >= asked) return `held out: ${found} problems after these, for the verifier's base rates, memory weights and final power`;
  return found === 0
    ? `held out: none of ${asked} (the data end with the run's problems): ${none}`
    : `held out: ${found} of ${asked} problems (the data end): the verifier's base rates, memory weights and final power are set on fewer`;
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
      return isFinishPart(m.part) &&
        isNumber(m.done) &&
        isNumber(m.total) &&
        isNumber(m.seconds) &&
        (m.loss === undefined || isNumber(m.loss)) &&
        (m.power === undefined || isNumber(m.power))
        ? (m as TrainProgressLine)
        : undefined;
    case "end":
      return isString(m.twistPath) && isNumber(m.batches) && typeof m.stopped === "boolean" ? (m as TrainProgressLine) : undefined;
    default:
      return undefined;
  }
}
