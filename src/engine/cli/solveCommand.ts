/** `twisted-smc solve "<problem>"`: twisted SMC over the model, printing the answer and its posterior. */
import { parseArgs } from "node:util";
import { decodeLogWeight } from "../../protocol/record";
import { DEVICES, DeviceRequest } from "../lm/device";
import { loadModel, withCpuFallback } from "../lm/loadModel";
import { goldAnswer, parseNumber } from "../math/answer";
import { RESAMPLING_SCHEMES, ResamplingScheme } from "../smc/resampling";
import { DEFAULT_SOLVE_OPTIONS, solve, SolveResult } from "../solve";
import { writeFileAtomic } from "../util/atomicWrite";
import { choiceOption, intOption, numberOption, stringOption, UsageError } from "../util/options";
import { loadTwistOption } from "../twist/resolve";

const D = DEFAULT_SOLVE_OPTIONS;

export const SOLVE_HELP = `Usage: twisted-smc solve "<problem>" [options]

Runs twisted Sequential Monte Carlo: K particles advance through the model in one batch, are
reweighted by the twist and resampled when their effective sample size drops; the answer is the
weighted vote over the particles' final answers.

Options:
  --model DIR              model folder (default: the shipped models/tiny-math-llama)
  --twist FILE|none        twist file (default: the model folder's shipped twist for --level, else none)
  --particles K            number of particles (default ${D.particles})
  --level token|step       twist and resample per token, or per reasoning line (default ${D.level})
  --resampling SCHEME      ${RESAMPLING_SCHEMES.join("|")} (default ${D.resampling})
  --ess-threshold X        resample when ESS < X·K (default ${D.essThreshold})
  --resample WHEN          adaptive|always|never (default ${D.resample})
  --max-tokens N           tokens per particle at most (default ${D.maxTokens})
  --temperature T          proposal temperature, > 0 (default ${D.temperature})
  --seed S                 random seed (default ${D.seed})
  --gold N                 a known answer: the final potential becomes the reward
  --device D               ${DEVICES.join("|")} (default auto)
  --threads N              CPU threads (default: all cores)
  --json                   print one JSON object
  --record FILE            write the step-by-step record (for replay) to FILE`;

export async function solveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      twist: { type: "string" },
      particles: { type: "string" },
      level: { type: "string" },
      resampling: { type: "string" },
      "ess-threshold": { type: "string" },
      resample: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      seed: { type: "string" },
      gold: { type: "string" },
      device: { type: "string" },
      threads: { type: "string" },
      json: { type: "boolean" },
      record: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(SOLVE_HELP);
    return;
  }
  const problem = positionals.join(" ").trim();
  if (!problem) throw new UsageError(`solve needs a problem text\n\n${SOLVE_HELP}`);
  const level = choiceOption(values, "level", ["token", "step"] as const, D.level);
  const essThreshold = numberOption(values, "ess-threshold", D.essThreshold);
  if (essThreshold > 1) throw new UsageError("--ess-threshold must be between 0 and 1");
  const temperature = numberOption(values, "temperature", D.temperature);
  if (temperature <= 0) throw new UsageError("--temperature must be > 0 for SMC (use `sample --temperature 0` for greedy)");
  let gold: number | undefined;
  if (values.gold !== undefined) {
    gold = parseNumber(values.gold) ?? goldAnswer(values.gold);
    if (gold === undefined) throw new UsageError(`--gold must be a number, got "${values.gold}"`);
  }
  const loadOptions = {
    threads: values.threads === undefined ? undefined : intOption(values, "threads", 1, 1),
    device: choiceOption<DeviceRequest>(values, "device", DEVICES, "auto"),
  };
  let model = await loadModel(stringOption(values, "model"), loadOptions);
  try {
    const twist = await loadTwistOption(stringOption(values, "twist"), model, level);
    const recordFile = stringOption(values, "record");
    const result = await withCpuFallback(model, loadOptions, (m) => solve(m, problem, {
      particles: intOption(values, "particles", D.particles, 1),
      level,
      resampling: choiceOption<ResamplingScheme>(values, "resampling", RESAMPLING_SCHEMES, D.resampling),
      essThreshold,
      resample: choiceOption(values, "resample", ["adaptive", "always", "never"] as const, D.resample),
      maxTokens: intOption(values, "max-tokens", D.maxTokens, 1),
      temperature,
      seed: intOption(values, "seed", D.seed),
      twist: twist?.twist,
      twistName: twist?.name ?? null,
      gold,
      record: recordFile !== undefined,
    }), (cpu) => {
      void model.lm.dispose();
      model = cpu;
    });
    if (recordFile) {
      writeFileAtomic(recordFile, JSON.stringify(result.record) + "\n");
      delete result.record;
    }
    console.log(values.json ? JSON.stringify(result, null, 2) : formatSolve(result));
  } finally {
    await model.lm.dispose();
  }
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export function formatSolve(r: SolveResult): string {
  const lines = [
    `Problem: ${r.problem}`,
    `Answer:  ${r.answer ?? "(no particle gave an answer)"}${r.answer ? `  (posterior ${pct(r.probability)})` : ""}`,
    "",
    "Posterior over answers:",
    ...r.posterior.slice(0, 8).map((a) => `  ${a.answer.padStart(8)}  ${pct(a.probability).padStart(6)}  (${a.particles} particle${a.particles === 1 ? "" : "s"})`),
  ];
  if (r.unanswered > 0) lines.push(`  ${"(none)".padStart(8)}  ${pct(r.unanswered).padStart(6)}`);
  const best = r.particles.map((p, i) => ({ p, i })).filter(({ p }) => p.answer === r.answer).sort((a, b) => decodeLogWeight(b.p.logWeight) - decodeLogWeight(a.p.logWeight))[0];
  if (best) lines.push("", `Chosen solution (particle ${best.i + 1}):`, ...best.p.text.split("\n").map((l) => `  ${l}`));
  const minEss = r.ess.length ? Math.min(...r.ess) : r.particles.length;
  lines.push(
    "",
    `SMC:     ${r.particles.length} particles, ${r.level} level, twist ${r.twist ?? "none"}, ${r.steps} steps, ` +
      `resampled ${r.resampledAt.length}×, min ESS ${minEss.toFixed(1)}, log Ẑ ${r.logZ.toFixed(3)}`,
    `Model:   ${r.model} on ${r.device}`,
    ...(r.deviceChoice?.includes("not used") ? [`Device:  ${r.deviceChoice}`] : []),
    `Timing:  ${r.timing.totalMs} ms, ${r.timing.forwardPasses} forward passes, ${r.timing.generatedTokens} tokens (${r.timing.tokensPerSecond} tokens/s)`,
  );
  if (r.collapsed) lines.push(`Warning: ${r.collapsed}`);
  if (r.correct !== undefined) lines.push(`Known answer: ${r.correct ? "correct" : "wrong"}`);
  return lines.join("\n");
}
