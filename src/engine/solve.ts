/**
 * Solving one problem: twisted SMC over the model, then the weighted vote. The one entry point that the
 * CLI's `solve`, the editor's engine process and evaluation share, with one result type.
 */
import { encodeWithinContext, PromptInContext } from "./lm/model/contextWindow";
import { LoadedModel } from "./lm/model/loadModel";
import { modelDomain, outOfDepth } from "./lm/model/modelDomain";
import type { AnswerConfidence } from "../protocol/protocol";
import { describeConfidence } from "./smc/confidence";
import { answersMatch, extractAnswer } from "./math/answer";
import { answerPosterior } from "./smc/posterior";
import { AnswerProbability, encodeLogWeight, SmcRecord, SmcStepRecord, SolvedParticle } from "../protocol/record";
import { runTwistedSmc, SmcCancelled, SmcLevel, SmcOptions } from "./smc/twistedSmc";
import { runLineSmc } from "./smc/lineSmc";
import { RemoteModel, remoteLineProposer, remoteWithSystemPrompt } from "./remote/remoteModel";
import { RemotePrompt } from "./remote/remoteText";
import { withSystemPrompt } from "./lm/model/tokenizer";
import { knownAnswerTwist, unknownAnswerPotential } from "./twist/finalPotential";

/** A model the engine runs (local) or steers on an inference server (remote): solve takes either. */
export type SolveModel = LoadedModel | RemoteModel;

export const isRemote = (model: SolveModel): model is RemoteModel => "backend" in model && model.backend === "openai";

/** `model` with the user's system prompt in every prompt (blank: none): per request, sharing the model. */
export function withSystem<M extends SolveModel>(model: M, system: string | undefined): M {
  return (isRemote(model) ? remoteWithSystemPrompt(model, system) : withSystemPrompt(model as LoadedModel, system)) as M;
}

/** The SMC settings a caller chooses; the engine supplies the model-specific rest. */
export type SolveOptions = Pick<
  SmcOptions,
  "particles" | "level" | "resampling" | "essThreshold" | "resample" | "maxTokens" | "temperature" | "seed" | "twist" | "onStep" | "signal"
> & {
  /** A name for the twist in results (its file), or null for none. */
  twistName?: string | null;
  /** The known answer, when there is one: the final potential becomes the reward (training, evaluation). */
  gold?: number;
  /** Keep the full step-by-step record in the result. */
  record?: boolean;
};

export const DEFAULT_SOLVE_OPTIONS: Omit<SolveOptions, "twist"> = {
  particles: 16,
  level: "step",
  resampling: "systematic",
  essThreshold: 0.5,
  resample: "adaptive",
  maxTokens: 96,
  temperature: 1,
  seed: 0,
};

export type { SolvedParticle };

export interface SolveResult {
  problem: string;
  answer: string | null;
  /** Probability of the chosen answer under the weighted vote. */
  probability: number;
  posterior: AnswerProbability[];
  /** The answer's certainty in words: a tie, a low posterior, a problem outside the model's depth. */
  confidence: AnswerConfidence;
  /** Weight of particles that gave no answer. */
  unanswered: number;
  logZ: number;
  ess: number[];
  resampledAt: number[];
  particles: SolvedParticle[];
  steps: number;
  level: SmcLevel;
  twist: string | null;
  model: string;
  /** The ONNX file loaded, relative to the model folder (onnx/model_q4.onnx, say). */
  modelFile?: string;
  /** Where the model ran: a device (cpu, webgpu…), or "server" for a remote backend. */
  device: string;
  /** The inference server's URL (without credentials) and served model, for the remote backend. */
  server?: string;
  /** Set when the server's own chat template and tokenizer made the prompt (no tokenizer files were given). */
  formattedByServer?: boolean;
  deviceChoice?: string;
  /** requests: HTTP requests to the inference server (remote backend; forwardPasses is then 0). */
  timing: { totalMs: number; forwardPasses: number; requests?: number; generatedTokens: number; tokensPerSecond: number };
  collapsed?: string;
  /** Things the user should know about this run (a capped token budget, say), one line each. */
  warnings?: string[];
  /** Whether the chosen answer equals the known answer, when one was given. */
  correct?: boolean;
  record?: SmcRecord;
}

export async function solve(model: SolveModel, problem: string, options: SolveOptions): Promise<SolveResult> {
  const question = problem.trim();
  if (!question) throw new RangeError("the problem text is empty");
  const text = isRemote(model) ? model.text : model.tokenizer;
  const folder = isRemote(model) ? model.text.folder : model.folder;
  const start = performance.now();
  const steps: SmcStepRecord[] = [];
  const gold = options.gold;
  const fitted: PromptInContext & { text?: string } = isRemote(model)
    ? await remotePrompt(model, question, options)
    : encodeWithinContext(model, question, options.maxTokens);
  const { prompt, maxTokens, warning } = fitted;
  const domain = folder && modelDomain(folder.dir);
  const depth = domain && outOfDepth(domain, folder.name, question);
  const smc: SmcOptions = {
    ...options,
    // A known answer is the final potential itself: the twist keeps its floor under each line and reads
    // the answer (finalPotential.ts).
    twist: gold === undefined ? options.twist : knownAnswerTwist(options.twist, gold),
    maxTokens,
    // Unknown answer: the twist's final potential (φ^γ for a line verifier with a final power; else its own value).
    logFinalPotential:
      gold === undefined
        ? unknownAnswerPotential(options.twist)
        : (text) => {
            const a = extractAnswer(text);
            return a !== undefined && answersMatch(a.value, gold) ? 0 : -Infinity;
          },
    text,
    onStep: (s) => {
      if (options.record) steps.push(s);
      options.onStep?.(s);
    },
  };
  const run = isRemote(model) ? await runLineSmc(remoteLineProposer(model), prompt, smc) : await runTwistedSmc(model.lm, prompt, smc);
  const totalMs = performance.now() - start;
  const texts = run.particles.map((p) => text.decode(p.tokens));
  const vote = answerPosterior(
    texts,
    run.particles.map((p) => p.logWeight),
  );
  const result: SolveResult = {
    problem: question,
    answer: vote.answer,
    probability: vote.posterior[0]?.probability ?? 0,
    posterior: vote.posterior,
    confidence: describeConfidence(vote.posterior, depth),
    unanswered: vote.unanswered,
    logZ: run.logZ,
    ess: run.ess,
    resampledAt: run.resampledAt,
    particles: run.particles.map((p, i) => ({
      text: texts[i],
      answer: extractAnswer(texts[i])?.key ?? null,
      logWeight: encodeLogWeight(p.logWeight),
      finishReason: p.finishReason,
    })),
    steps: run.steps,
    level: options.level,
    twist: options.twistName ?? null,
    model: isRemote(model) ? model.text.name : model.folder.name,
    ...(isRemote(model)
      ? { device: "server", server: model.server, ...(!model.text.folder && { formattedByServer: true }) }
      : { modelFile: model.folder.onnxFile, device: model.lm.device, deviceChoice: model.lm.deviceChoice }),
    timing: {
      totalMs: Math.round(totalMs * 10) / 10,
      forwardPasses: run.forwardPasses,
      ...(run.requests !== undefined && { requests: run.requests }),
      generatedTokens: run.generatedTokens,
      tokensPerSecond: Math.round(run.generatedTokens / Math.max(totalMs / 1000, 1e-9)),
    },
  };
  if (run.collapsed) result.collapsed = run.collapsed;
  if (warning) result.warnings = [warning];
  if (gold !== undefined) result.correct = vote.answer !== null && answersMatch(Number(vote.answer), gold);
  if (options.record) {
    const { onStep: _o, signal: _s, twist: _t, ...plain } = options;
    result.record = { version: 1, problem: question, prompt: fitted.text ?? text.decode(prompt), options: plain, steps };
  }
  return result;
}

/** The prompt on a server, which may ask the server to format it: a cancel while it is asked is a cancel. */
async function remotePrompt(model: RemoteModel, question: string, options: SolveOptions): Promise<RemotePrompt> {
  try {
    return await model.text.prompt(question, options.maxTokens, options.signal);
  } catch (e) {
    if (options.signal?.aborted) throw new SmcCancelled();
    throw e;
  }
}
