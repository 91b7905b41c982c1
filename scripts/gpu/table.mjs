#!/usr/bin/env node
// Turns the results of scripts/gpu/run.sh (a folder: gpu.txt, torch-cuda.txt, *.jsonl, profile.txt)
// into the markdown table for README.md's performance section, with the card and the goals' ratios.
// Usage: node scripts/gpu/table.mjs RESULTS_DIR [DATE]
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node scripts/gpu/table.mjs RESULTS_DIR [DATE]");
  process.exit(2);
}
const date = process.argv[3] ?? new Date().toISOString().slice(0, 10);
const read = (f) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), "utf8") : "");

const card = read("gpu.txt").split("\n")[0].trim() || "unknown GPU";
const torch = {};
for (const m of read("torch-cuda.txt").matchAll(/torch-cuda torch\.(float32|float16) K=(\d+) cache=\d+ median step ([\d.]+) ms/g)) {
  torch[`${m[1]}|${m[2]}`] = Number(m[3]);
}
// Every *.jsonl of the run, told apart by their fields: the model's precision, the device, the level.
const measured = readdirSync(dir)
  .filter((f) => f.endsWith(".jsonl"))
  .flatMap((f) =>
    read(f)
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l)),
  );
// Rows with Dawn's validation changed (--webgpu-validation), or a fixed capacity's inputs fed apart
// (--pack-step no), get a line of their own.
const all = measured.filter((r) => !r.validation && r.packStep !== "no");
// Rows measured in the CPU's kernels (--fewest-kernels no) are the before of the GPU's fusions.
// The shipped Llama's rows (run.sh's last timing) get a line of their own.
const SHIPPED = /tiny-math-llama/;
// Rows with a fixed-capacity KV cache (the decoder's, or asked for where the graph took it: older runs
// said `capacityApplied`) get columns of their own; the token-level and fp16 ones take either cache
// (capacity null): each comes from one part of run.sh, run with the decoder's default.
const fixed = (r) => r.fixedCapacity === "yes" && r.capacityApplied !== false;
const on = (device, fp16, plain = false, capacity = false) =>
  all.filter(
    (r) =>
      r.device?.startsWith(device) &&
      !SHIPPED.test(r.model) &&
      /fp16/.test(r.model) === fp16 &&
      (r.fewestKernels === "no") === plain &&
      (capacity === null || fixed(r) === capacity),
  );
const bench = {
  fp32: on("webgpu", false),
  plain: on("webgpu", false, true),
  fp16: on("webgpu", true, false, null),
  token: on("webgpu", false, false, null),
  cpu: on("cpu", false),
  capacity: on("webgpu", false, false, true),
};
// Per step: the median of a run's decode steps, as mkmodel.py times PyTorch's (older results have only the mean).
const row = (list, level, k) => list.find((r) => r.level === level && r.K === k && typeof r.msPerStep === "number");
const perStep = (r) => r?.msPerStepMedian ?? r?.msPerStep;
const ms = (list, level, k) => perStep(row(list, level, k));
const mean = (list, level, k) => row(list, level, k)?.msPerStep;
const fmt = (x) => (x === undefined ? "–" : x < 10 ? x.toFixed(2) : x.toFixed(1));
const ratio = (a, b) => (a === undefined || b === undefined ? "–" : `${(a / b).toFixed(2)}×`);

const lines = [
  `Measured ${date} on ${card} with \`scripts/gpu/run.sh\` (GPT-2-small-shaped decoder, random weights, 256-token prompt, 32 decode steps; ${all.some((r) => typeof r.msPerStepMedian === "number") ? "ms per step: the median of the steps, PyTorch's too" : "ms per step: the engine's mean over the run, PyTorch's median"}):`,
  "",
];
// One column per measurement; a column the run has no number for is left out (a shorter rerun skips parts).
const columns = [
  ["WebGPU fp32, step", (k) => fmt(ms(bench.fp32, "step", k))],
  ["WebGPU fp32, step, fixed-capacity cache", (k) => fmt(ms(bench.capacity, "step", k))],
  ["WebGPU fp32, step, kernels as on the CPU", (k) => fmt(ms(bench.plain, "step", k))],
  ["WebGPU fp32, token", (k) => fmt(ms(bench.token, "token", k))],
  ["WebGPU fp16, step", (k) => fmt(ms(bench.fp16, "step", k))],
  ["CPU, step", (k) => fmt(ms(bench.cpu, "step", k))],
  ["PyTorch CUDA fp32", (k) => fmt(torch[`float32|${k}`])],
  ["PyTorch CUDA fp16", (k) => fmt(torch[`float16|${k}`])],
  ["WebGPU fp32 step / PyTorch fp32", (k) => ratio(ms(bench.fp32, "step", k), torch[`float32|${k}`])],
  ["WebGPU fp32 fixed-capacity step / PyTorch fp32", (k) => ratio(ms(bench.capacity, "step", k), torch[`float32|${k}`])],
  ["WebGPU fp16 step / PyTorch fp16", (k) => ratio(ms(bench.fp16, "step", k), torch[`float16|${k}`])],
  ["CPU / WebGPU fp32 step", (k) => ratio(ms(bench.cpu, "step", k), ms(bench.fp32, "step", k))],
  ["CPU / WebGPU fp32 fixed-capacity step", (k) => ratio(ms(bench.cpu, "step", k), ms(bench.capacity, "step", k))],
];
const rows = [1, 16, 64, 256]
  .map((k) => [String(k), ...columns.map(([, cell]) => cell(k))])
  .filter((r) => r.slice(1).some((c) => c !== "–"));
const shown = [0, ...columns.map((_, i) => i + 1).filter((i) => rows.some((r) => r[i] !== "–"))];
lines.push(`| ${shown.map((i) => (i ? columns[i - 1][0] : "K")).join(" | ")} |`, `| ${shown.map(() => "---").join(" | ")} |`);
for (const r of rows) lines.push(`| ${shown.map((i) => r[i]).join(" | ")} |`);
const means = [1, 16, 64, 256]
  .map((k) => [k, mean(bench.fp32, "step", k), mean(bench.cpu, "step", k)])
  .filter(([, w, c]) => w !== undefined || c !== undefined);
if (means.some(([k, w]) => w !== undefined && w !== ms(bench.fp32, "step", k))) {
  lines.push(
    "",
    `Means over each whole run (its prompt's prefill included), step level, WebGPU fp32 / CPU: ${means.map(([k, w, c]) => `K = ${k}: ${fmt(w)} / ${fmt(c)}`).join("; ")} ms.`,
  );
}
const fixedMeans = [16, 64, 256].map((k) => [k, mean(bench.capacity, "step", k)]).filter(([, m]) => m !== undefined);
if (fixedMeans.length)
  lines.push(
    "",
    `Means over each whole run, WebGPU fp32 step level, fixed-capacity cache: ${fixedMeans.map(([k, m]) => `K = ${k}: ${fmt(m)}`).join("; ")} ms.`,
  );
const shipped = all.filter((r) => SHIPPED.test(r.model) && r.device?.startsWith("webgpu") && typeof r.msPerStep === "number");
if (shipped.length) {
  const at = (plain) =>
    [16, 64].map((k) => fmt(perStep(shipped.find((r) => r.K === k && (r.fewestKernels === "no") === plain)))).join(" / ");
  lines.push(
    "",
    `The shipped Llama on WebGPU, step level, K = 16 / 64: ${at(false)} ms per step in the fewest kernels, ${at(true)} in the CPU's.`,
  );
}
const readback = [...bench.fp32, ...bench.fp16].filter((r) => typeof r.readbackKiBPerStep === "number");
if (readback.length) {
  const kib = [...new Set(readback.map((r) => r.readbackKiBPerStep))];
  const what =
    kib.length === 1
      ? `${kib[0]} KiB per step at every K and level`
      : readback.map((r) => `${r.level} K=${r.K}: ${r.readbackKiBPerStep} KiB`).join("; ");
  lines.push("", `Logits and hidden states read back from the GPU: ${what} (a step downloads only its packed draws, K × 20 bytes).`);
}
const unchecked = measured.filter(
  (r) =>
    r.validation === "disabled" &&
    r.device?.startsWith("webgpu") &&
    r.level === "step" &&
    typeof r.msPerStep === "number" &&
    !SHIPPED.test(r.model),
);
if (unchecked.length) {
  const cases = unchecked.map((r) => {
    const capacity = fixed(r);
    const checked = ms(capacity ? bench.capacity : bench.fp32, "step", r.K);
    return `K = ${r.K}${capacity ? ", fixed-capacity cache" : ""}: ${fmt(perStep(r))} ms (${fmt(checked)} with it)`;
  });
  lines.push("", `With Dawn's per-dispatch validation off (\`disabled\`), WebGPU fp32, step level: ${cases.join("; ")}.`);
}
const apart = measured.filter((r) => r.packStep === "no" && fixed(r) && r.level === "step" && typeof r.msPerStep === "number");
if (apart.length) {
  const cases = apart.map((r) => `K = ${r.K}: ${fmt(perStep(r))} ms (${fmt(ms(bench.capacity, "step", r.K))} packed)`);
  lines.push(
    "",
    `The fixed-capacity cache with its per-pass inputs fed one by one (five uploads a step instead of one), WebGPU fp32, step level: ${cases.join("; ")}.`,
  );
}
const agree = [...bench.fp32, ...on("webgpu", false, false, true), ...bench.fp16].filter((r) => r.reference);
if (agree.length) {
  lines.push("", "Logits against the fp32 model on the CPU (prefill, broadcast, 4 steps with held rows and gathers):");
  for (const r of agree)
    lines.push(
      `- ${r.model} on ${r.device}${fixed(r) && !/fixed-capacity/.test(r.device) ? ", fixed-capacity cache" : ""}: max |Δ| ${r.maxAbsDiff} (${r.relativeToMaxLogit} of the largest logit), top-1 agreement ${r.top1Agreement}`,
    );
}
// Each profile: its file (profile-K[-plain|-capacity]_DATE.json) and the median of its later passes.
const profiles = [
  ...read("profile.txt").matchAll(
    /profile-(\d+)(-plain|-capacity)?_[^\n]*?json:[\s\S]*?later passes, median: wall ([\d.]+) ms, GPU ([\d.]+) ms, (\d+) dispatches/g,
  ),
];
if (profiles.length) {
  lines.push("", "onnxruntime's profile of a step-level decode step (median of the later passes; GPU time from timestamp queries):");
  for (const m of profiles)
    lines.push(
      `- K = ${m[1]}${{ "-plain": ", kernels as on the CPU", "-capacity": ", fixed-capacity cache" }[m[2]] ?? ""}: wall ${Number(m[3]).toFixed(1)} ms, GPU busy ${Number(m[4]).toFixed(1)} ms, ${m[5]} dispatches`,
    );
}
// opCost.ts's lines: per shape, each case's median step.
const costs = read("op-cost.jsonl")
  .split("\n")
  .filter((l) => l.startsWith("{"))
  .map((l) => JSON.parse(l));
if (costs.length) {
  lines.push(
    "",
    "The KV cache's nodes alone on the WebGPU provider (`scripts/gpu/opCost.ts`; median ms per step, outputs fed back unless said):",
  );
  const key = (c) => `${c.k}|${c.cache}|${c.layers}|${c.memPattern ?? ""}|${c.storageCache ?? ""}`;
  for (const shape of [...new Set(costs.map(key))]) {
    const [k, cache, layers, memPattern, storageCache] = shape.split("|");
    const here = costs.filter((c) => key(c) === shape);
    const how = `${memPattern === "false" ? ", memory patterns off" : ""}${storageCache ? `, buffer cache ${storageCache}` : ""}`;
    lines.push(
      `- K = ${k}, ${cache}-token cache, ${layers} layers${how}: ${here.map((c) => `${c.case} ${fmt(c.msPerStepMedian)}`).join(", ")}`,
    );
  }
}
// The same cases profiled (K = 16): where each step's time goes, GPU against the CPU issuing it.
const costProfiles = [
  ...read("op-cost-profile.txt").matchAll(
    /opcost-([a-z-]+)_[^\n]*?json:[\s\S]*?later passes, median: wall ([\d.]+) ms, GPU ([\d.]+) ms, (\d+) dispatches[\s\S]*?CPU time in nodes per pass \(median\): ([\d.]+) ms/g,
  ),
];
if (costProfiles.length) {
  lines.push("", "Profiled (onnxruntime's trace, median of the later steps):");
  for (const m of costProfiles)
    lines.push(
      `- ${m[1]}: wall ${Number(m[2]).toFixed(1)} ms, GPU busy ${Number(m[3]).toFixed(1)} ms in ${m[4]} dispatches, CPU in the nodes ${Number(m[5]).toFixed(1)} ms`,
    );
}
const tests = read("webgpu-tests.txt").match(/(\d+) passing[^\n]*(\n\s*\d+ pending)?(\n\s*\d+ failing)?/);
// The CLI's solve of the README's problem (run.sh's cli-solve.jsonl): the device it chose, the answer, the time.
const solves = read("cli-solve.jsonl")
  .split("\n")
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l));
if (solves.length)
  lines.push(
    "",
    `\`twisted-smc solve\` of the README's problem, device auto: ${solves.map((r) => `${r.answer} in ${r.timing.totalMs} ms (${r.timing.forwardPasses} passes)`).join(", ")} on ${solves[0].device}.`,
  );
if (tests) lines.push("", `WebGPU test suite on the card: ${tests[0].replace(/\s+/g, " ").trim()}.`);
console.log(lines.join("\n"));
