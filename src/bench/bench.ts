/**
 * `npm run bench`: decode speed of the engine on the shipped model, plain batched sampling against
 * twisted SMC (token level, a twist head that does real work, adaptive resampling), for K particles,
 * and a PyTorch CPU eager reference on the same weights when /usr/bin/python3 has torch. Prints JSON.
 *
 * Every loop runs a fixed number of steps with EOS ignored, so the same work is timed everywhere.
 *
 * Then the two levels with the model's own twists (twist-token.json, the digit twist; twist-step.json,
 * the line verifier) on real problems, EOS and line ends honoured, one after the other on each problem:
 * what a token-level step costs against a step-level one when the twist reads the text as it is written.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { generate } from "../engine/lm/generate";
import { LoadedModel, loadModel } from "../engine/lm/model/loadModel";
import { encodeWithinContext } from "../engine/lm/model/contextWindow";
import { loadTwistOption } from "../engine/twist/resolve";
import { defaultModelDir } from "../engine/lm/model/modelFolder";
import { runTwistedSmc } from "../engine/smc/twistedSmc";
import { evalSmcOptions } from "../engine/eval/evaluate";
import type { TokenTwist } from "../engine/smc/twist";
import { TokenTwistHead } from "../engine/twist/heads";
import { unknownAnswerPotential } from "../engine/twist/finalPotential";
import { OnnxTokenTwist } from "../engine/twist/onnxTwist";
import { synthesize } from "../engine/math/problems";
import { Rng } from "../engine/util/rng";
import { median } from "./median";

const STEPS = 64;
const REPEATS = 3;
const KS = (process.env.BENCH_KS ?? "1,16,64").split(",").map(Number);
const threads = Number(process.env.BENCH_THREADS ?? availableParallelism());

function torchReference(modelDir: string, prompt: number[], k: number): Record<string, unknown> | string {
  const python = "/usr/bin/python3";
  if (!existsSync(python)) return "no /usr/bin/python3";
  const script = join(__dirname, "../scripts/bench/torch_reference.py");
  const r = spawnSync(python, [script, modelDir, JSON.stringify(prompt), String(k), String(STEPS), String(threads)], {
    encoding: "utf8",
    timeout: 300000,
  });
  if (r.status !== 0)
    return /No module named '(torch|numpy)'/.test(r.stderr)
      ? "PyTorch is not installed (apt-get install python3-torch python3-numpy)"
      : `failed: ${r.stderr.trim().split("\n").pop()}`;
  return JSON.parse(r.stdout);
}

async function main() {
  const modelDir = defaultModelDir(__dirname);
  const model = await loadModel(modelDir, { threads, device: "cpu" });
  const { tokenizer, lm } = model;
  const prompt = tokenizer.encodeProblem(synthesize("test", 1, 0)[0].question);
  // A token twist with random non-zero weights, so its cost and resampling are real.
  const rng = new Rng(5);
  const head = TokenTwistHead.init(lm.hiddenSize, lm.vocabSize, Math.min(64, lm.hiddenSize), rng);
  for (let i = 0; i < head.p.W.length; i++) head.p.W[i] = 0.3 * rng.normal();
  const twist = await OnnxTokenTwist.create(head);
  const rows: Record<string, unknown>[] = [];
  for (const K of KS) {
    const plainMs: number[] = [];
    const smcMs: number[] = [];
    let resamples = 0;
    for (let r = 0; r < REPEATS + 1; r++) {
      const g = await generate(lm, prompt, { numSamples: K, maxTokens: STEPS + 1, temperature: 1, seed: r, isEos: () => false });
      const t0 = performance.now();
      const s = await runTwistedSmc(lm, prompt, {
        particles: K,
        level: "token",
        resampling: "systematic",
        essThreshold: 0.5,
        resample: "adaptive",
        maxTokens: STEPS + 1,
        temperature: 1,
        seed: r,
        twist,
        text: { isEos: () => false, isLineEnd: () => false, decode: (t) => tokenizer.decode(t) },
      });
      const smcTotal = performance.now() - t0;
      if (r === 0) continue; // warm-up
      plainMs.push(g.decodeMs / g.steps);
      smcMs.push(smcTotal / s.forwardPasses);
      resamples += s.resampledAt.length;
    }
    const plain = median(plainMs);
    const smc = median(smcMs);
    const torch = torchReference(modelDir, prompt, K);
    rows.push({
      K,
      plainSampling: { msPerStep: round(plain), tokensPerSecond: Math.round((K * 1000) / plain) },
      twistedSmc: { msPerStep: round(smc), tokensPerSecond: Math.round((K * 1000) / smc), resamplesPerRun: resamples / REPEATS },
      smcOverPlain: round(smc / plain),
      pytorchCpuEager:
        typeof torch === "string"
          ? { unavailable: torch }
          : { msPerStep: round(torch.msPerStep as number), tokensPerSecond: Math.round(torch.tokensPerSecond as number) },
      engineOverPytorch: typeof torch === "string" ? null : round(plain / (torch.msPerStep as number)),
    });
  }
  const levels = await levelCost(model);
  const usage = process.resourceUsage();
  console.log(
    JSON.stringify(
      {
        model: modelDir,
        device: lm.device,
        steps: STEPS,
        repeats: REPEATS,
        threads,
        results: rows,
        levels,
        peakRssMiB: Math.round(usage.maxRSS / 1024),
        goals: {
          "smcOverPlain at K=16": "<= 1.15",
          engineOverPytorch: "<= 1 (engine at least as fast)",
          "levels.tokenOverStep": "<= 1.3",
        },
      },
      null,
      2,
    ),
  );
  await lm.dispose();
}

const LEVEL_PROBLEMS = Number(process.env.BENCH_LEVEL_PROBLEMS ?? 20);
const LEVEL_K = Number(process.env.BENCH_LEVEL_K ?? 16);

/**
 * ms per forward pass of token-level SMC with the model's twist-token.json, of step-level SMC with its
 * twist-step.json, and of plain SMC (ψ ≡ 1), on the same test problems and seeds, the three runs of a
 * problem one after the other (so that other load on the machine falls on all three alike); the first
 * problem warms up and is not counted.
 */
async function levelCost(model: LoadedModel): Promise<Record<string, unknown>> {
  const token = await loadTwistOption(undefined, model, "token");
  const step = await loadTwistOption(undefined, model, "step");
  if (!token || !step) return { unavailable: "the model folder has no twist-token.json and twist-step.json" };
  const { tokenizer, lm } = model;
  const twistTime = { ms: 0 };
  const runs = {
    token: { twist: token.twist.kind === "token" ? timedTokenTwist(token.twist, twistTime) : token.twist, level: "token" },
    step: { twist: step.twist, level: "step" },
    plain: { twist: undefined, level: "token" },
  } as const;
  const total = Object.fromEntries(Object.keys(runs).map((k) => [k, { ms: 0, passes: 0, tokens: 0 }])) as Record<
    keyof typeof runs,
    { ms: number; passes: number; tokens: number }
  >;
  for (const [i, p] of synthesize("test", LEVEL_PROBLEMS + 1, 0).entries()) {
    const { prompt, maxTokens } = encodeWithinContext(model, p.question, 96);
    for (const [name, { twist, level }] of Object.entries(runs) as [keyof typeof runs, (typeof runs)[keyof typeof runs]][]) {
      const t0 = performance.now();
      // As solve runs them: ending on the twist's final potential where it has one (φ^γ).
      const logFinalPotential = unknownAnswerPotential(twist);
      const r = await runTwistedSmc(lm, prompt, { ...evalSmcOptions(LEVEL_K, level, maxTokens, i, tokenizer), twist, logFinalPotential });
      if (i === 0) {
        twistTime.ms = 0;
        continue; // warm-up
      }
      total[name].ms += performance.now() - t0;
      total[name].passes += r.forwardPasses;
      total[name].tokens += r.generatedTokens;
    }
  }
  const per = (name: keyof typeof runs) => ({
    msPerPass: round(total[name].ms / total[name].passes),
    ...total[name],
    ms: Math.round(total[name].ms),
  });
  return {
    K: LEVEL_K,
    problems: LEVEL_PROBLEMS,
    tokenTwist: token.name,
    stepTwist: step.name,
    // The twist's own share of a token-level pass (the rest is the model, the draw and the weights).
    token: { ...per("token"), twistMsPerPass: round(twistTime.ms / total.token.passes) },
    step: per("step"),
    plain: per("plain"),
    tokenOverStep: round(total.token.ms / total.token.passes / (total.step.ms / total.step.passes)),
  };
}

/** The same twist, with the time of its logPsiNext calls added to `spent`. */
function timedTokenTwist(twist: TokenTwist, spent: { ms: number }): TokenTwist {
  const timed: TokenTwist = Object.create(twist);
  timed.logPsiNext = (input) => {
    const t0 = performance.now();
    const out = twist.logPsiNext(input);
    if (out instanceof Promise) return out.finally(() => (spent.ms += performance.now() - t0));
    spent.ms += performance.now() - t0;
    return out;
  };
  return timed;
}

const round = (x: number) => Math.round(x * 1000) / 1000;

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
