/**
 * The evaluation table for a model on an inference server (`eval --backend openai`): the rows the
 * server can give at the same budget N — greedy, single sample, majority vote, best-of-N by a twist that
 * reads text, step-level SMC without and with the twist (a posterior sample, and the weighted vote),
 * oracle pass@N — with the local table's row names, so the two backends' tables line up. Rows that need
 * the model's probabilities (token-level SMC, the log Ẑ bounds) are the local backend's alone.
 *
 * Problems run `concurrency` at a time over the model's one client, so the server batches the requests
 * of different problems; each problem's runs stay its own (a solve never mixes particles of two).
 */
import { MathProblem } from "../math/dataset";
import { RemoteModel, remoteLineProposer } from "../remote/remoteModel";
import { runLineSmc, LineSmcOptions } from "../smc/lineSmc";
import { StepTwist } from "../smc/twist";
import { unknownAnswerPotential } from "../twist/finalPotential";
import { correct, EvalReport, EvalRow, ROW, scoreParticles, scoreSamples, Tally, timed, twistNote } from "./evaluate";

export interface RemoteEvalOptions {
  particles: number;
  maxTokens: number;
  seed: number;
  /** Must read text only (the line verifier). */
  stepTwist?: StepTwist;
  /** Problems in flight at once (default 4). */
  concurrency?: number;
  onProblem?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface RemoteEvalReport extends EvalReport {
  /** Wall-clock seconds over all problems, and problems solved per minute. */
  wallSeconds: number;
  problemsPerMinute: number;
  concurrency: number;
  /** HTTP requests answered, all methods. */
  requests: number;
}

export async function evaluateRemote(model: RemoteModel, problems: MathProblem[], o: RemoteEvalOptions): Promise<RemoteEvalReport> {
  const { text, client } = model;
  if (o.stepTwist && !o.stepTwist.textOnly) throw new RangeError("a twist that reads hidden states cannot steer a model on a server");
  const N = o.particles;
  const concurrency = Math.max(1, o.concurrency ?? 4);
  const t = {
    greedy: new Tally(),
    single: new Tally(),
    majority: new Tally(),
    bestOfN: new Tally(),
    smcPlain: new Tally(),
    stepSample: new Tally(),
    stepVote: new Tally(),
    pass: new Tally(),
  };
  const proposer = remoteLineProposer(model);
  let requests = 0;
  /** n whole solutions of one prompt (their tokens): the model's own samples (temperature 1) or its greedy one (0). */
  const solutions = async (prompt: number[], n: number, temperature: number, maxTokens: number): Promise<number[][]> => {
    const prompts = Array.from({ length: n }, () => prompt);
    const r = await client.completeLines(
      { prompts, maxTokens, temperature, stop: [], eosTokenIds: text.eosTokenIds },
      { signal: o.signal },
    );
    requests += r.requests;
    return r.lines.map((c) => text.lineTokens(c));
  };

  const evaluateOne = async (p: MathProblem, i: number) => {
    const { prompt, maxTokens } = await text.prompt(p.question, o.maxTokens, o.signal);
    const seed = o.seed * 1000003 + i;

    const [greedy] = await timed(t.greedy, () => solutions(prompt, 1, 0, maxTokens));
    t.greedy.add(+correct(text.decode(greedy), p.gold));

    const seqs = await timed(t.majority, () => solutions(prompt, N, 1, maxTokens));
    const ok = scoreSamples(
      seqs.map((s) => text.decode(s)),
      p.gold,
      t,
    );

    if (o.stepTwist) {
      const twist = o.stepTwist;
      const values = await timed(t.bestOfN, async () =>
        Array.from(twist.logValue({ hiddenSize: 0, prefixes: seqs, decode: (x) => text.decode(x) })),
      );
      let best = 0;
      values.forEach((v, j) => (v > values[best] ? (best = j) : undefined));
      t.bestOfN.add(+ok[best]);
    }

    const base: LineSmcOptions = {
      particles: N,
      level: "step",
      resampling: "systematic",
      essThreshold: 0.5,
      resample: "adaptive",
      maxTokens,
      temperature: 1,
      seed,
      text,
      signal: o.signal,
    };
    const runAndScore = async (sampleTally: Tally, voteTally: Tally | undefined, opts: LineSmcOptions) => {
      const r = await timed(sampleTally, () => runLineSmc(proposer, prompt, opts));
      requests += r.requests ?? 0;
      scoreParticles(
        r.particles.map((q) => text.decode(q.tokens)),
        r.particles.map((q) => q.logWeight),
        p.gold,
        sampleTally,
        voteTally,
      );
    };
    await runAndScore(t.smcPlain, undefined, base);
    if (o.stepTwist)
      await runAndScore(t.stepSample, t.stepVote, { ...base, twist: o.stepTwist, logFinalPotential: unknownAnswerPotential(o.stepTwist) });
  };

  // A pool of `concurrency` problems in flight; the first failure stops the others from starting.
  const started = performance.now();
  let next = 0,
    done = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < problems.length && failed === undefined) {
      const i = next++;
      try {
        await evaluateOne(problems[i], i);
      } catch (e) {
        failed ??= e;
        return;
      }
      o.onProblem?.(++done, problems.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, problems.length) }, worker));
  if (failed !== undefined) throw failed;
  t.single.ms = t.majority.ms / N;
  const wallSeconds = (performance.now() - started) / 1000;

  const rows: EvalRow[] = [
    t.greedy.row(ROW.greedy, "one decode, T = 0"),
    t.single.row(ROW.single, "T = 1, mean over the N samples"),
    t.majority.row(ROW.majority(N)),
    t.bestOfN.row(ROW.bestOfN(N), twistNote(o.stepTwist)),
    t.smcPlain.row(ROW.smcPlain, "step level, ψ ≡ 1, φ ≡ 1: equals sampling"),
    t.stepSample.row(ROW.stepSample, twistNote(o.stepTwist)),
    t.stepVote.row(ROW.stepVote, twistNote(o.stepTwist)),
    t.pass.row(ROW.pass(N), "any of the N samples correct: a perfect verifier's ceiling"),
  ];
  return {
    n: problems.length,
    particles: N,
    rows,
    wallSeconds: Math.round(wallSeconds * 10) / 10,
    problemsPerMinute: Math.round((problems.length / wallSeconds) * 60 * 10) / 10,
    concurrency,
    requests,
  };
}
