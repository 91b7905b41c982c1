/**
 * What a twist-learning objective is to the trainer: the head it trains, the data it gathers from one
 * problem under the current twist, and its gradient over a batch of such data. Each objective lives in
 * its own file beside this one; index.ts maps the `--loss` names to them.
 */
import { LoadedModel } from "../../lm/model/loadModel";
import { MathProblem } from "../../math/dataset";
import { SmcLevel } from "../../smc/twistedSmc";
import { TrainableHead } from "../../twist/digitTwistHead";
import { PartialFitProgress } from "../partialResults";
import { CollectOptions, ProblemData, SampleOutcomes } from "../samples";

export interface ObjectiveResult {
  grads: Float64Array[];
  /** The objective's value: the CTL surrogate (its gradient is the CTL gradient) or the mean BCE. */
  loss: number;
}

/** What a fresh head is made for. */
export interface HeadOptions {
  level: SmcLevel;
  hiddenSize: number;
  vocabSize: number;
  /** Rank of a factorised head (--rank), where the head has one. */
  rank: number;
  /** The run's seed: a head's random initial values are drawn from `head:${seed}`. */
  seed: number;
  /** Line verifiers: digits a column reads from the column below (a resumed run keeps its checkpoint's). */
  verifierBelow?: 2 | 3;
}

export interface TwistObjective<Head extends TrainableHead = TrainableHead, Data extends ProblemData<object> = ProblemData<object>> {
  /** Its `--loss` name. */
  readonly name: string;
  /** What it learns, as twist files and checkpoints record it. */
  readonly description: string;
  /** The twist levels it trains (`--twist`). */
  readonly levels: readonly SmcLevel[];
  /** The Adam step size when --learning_rate is not given. */
  readonly learningRate: number;
  /** The head a run starts from. */
  initHead(o: HeadOptions): Head;
  /** One problem's data under the current twist (`o.twist`, the head as it runs in SMC). */
  collect(model: LoadedModel, problem: MathProblem, o: CollectOptions): Promise<Data>;
  /** The gradient of the objective over a batch with respect to the head's parameters, and its value. */
  gradient(head: Head, data: readonly Data[]): ObjectiveResult;
  /**
   * What a head learns by counting rather than by gradient (the digit twist's result lengths), taken
   * once per batch after its updates.
   */
  count?(head: Head, data: readonly Data[]): void;
  /**
   * What is done once after the epochs, before the twist is written (prm: the verifier refitted in small
   * steps, and the digit twist's head fitted to it): the head to write, or undefined when the signal stopped it. It must depend only
   * on the trained head, the problems and the options, so that a run resumed after its epochs repeats
   * it; the checkpoint keeps the head as the epochs left it.
   */
  finish?(model: LoadedModel, head: Head, problems: readonly MathProblem[], o: FinishOptions): Promise<Head | undefined>;
  /**
   * How many problems after the run's `n` the finish reads (FinishOptions.heldOut): problems no step of
   * the run has read (prm sets its verifier's base rates on them).
   */
  heldOut?(n: number): number;
  /**
   * For an objective whose data do not depend on the head (plain samples): what of a problem's data
   * replay keeps (`--replay`), and the data again from what was kept, for a later batch's gradient.
   */
  replay?: {
    keep(data: Data): SampleOutcomes;
    restore(kept: SampleOutcomes, o: Pick<CollectOptions, "level" | "contrastWeight">): Data;
  };
}

export interface FinishOptions {
  seed: number;
  maxTokens: number;
  /** prm: the run's --contrast_weight (the verifier's refit has the epochs' objective). */
  contrastWeight: number;
  /** The data set's problems after the run's, as many as `heldOut` asked (fewer where the data end). */
  heldOut: readonly MathProblem[];
  signal?: AbortSignal;
  onProgress?: (p: PartialFitProgress) => void;
}

/** Divides the summed gradients and loss by `n`: the mean over problems, rows or lines. */
export function average(grads: Float64Array[], loss: number, n: number): ObjectiveResult {
  for (const g of grads) for (let i = 0; i < g.length; i++) g[i] /= n;
  return { grads, loss: loss / n };
}
