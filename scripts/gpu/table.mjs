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
const all = readdirSync(dir)
  .filter((f) => f.endsWith(".jsonl"))
  .flatMap((f) => read(f).split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)))
  .filter((r) => !r.validation);
// Rows measured in the CPU's kernels (--fewest-kernels no) are the before of the GPU's fusions.
// The shipped Llama's rows (run.sh's last timing) get a line of their own.
const SHIPPED = /tiny-math-llama/;
const on = (device, fp16, plain = false) => all.filter((r) => r.device?.startsWith(device) && !SHIPPED.test(r.model) && /fp16/.test(r.model) === fp16 && (r.fewestKernels === "no") === plain);
const bench = { fp32: on("webgpu", false), plain: on("webgpu", false, true), fp16: on("webgpu", true), cpu: on("cpu", false) };
const ms = (list, level, k) => list.find((r) => r.level === level && r.K === k && typeof r.msPerStep === "number")?.msPerStep;
const fmt = (x) => (x === undefined ? "–" : x < 10 ? x.toFixed(2) : x.toFixed(1));
const ratio = (a, b) => (a === undefined || b === undefined ? "–" : `${(a / b).toFixed(2)}×`);

const lines = [
  `Measured ${date} on ${card} with \`scripts/gpu/run.sh\` (GPT-2-small-shaped decoder, random weights, 256-token prompt, 32 decode steps):`,
  "",
  "| K | WebGPU fp32, step | WebGPU fp32, step, kernels as on the CPU | WebGPU fp32, token | WebGPU fp16, step | CPU, step | PyTorch CUDA fp32 | PyTorch CUDA fp16 | WebGPU fp32 step / PyTorch fp32 | WebGPU fp16 step / PyTorch fp16 | CPU / WebGPU fp32 step |",
  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
];
for (const k of [1, 16, 64, 256]) {
  const w = ms(bench.fp32, "step", k);
  const u = ms(bench.plain, "step", k);
  const wt = ms(bench.fp32, "token", k);
  const h = ms(bench.fp16, "step", k);
  const c = ms(bench.cpu, "step", k);
  const t32 = torch[`float32|${k}`];
  const t16 = torch[`float16|${k}`];
  if ([w, u, wt, h, c, t32, t16].every((x) => x === undefined)) continue;
  lines.push(`| ${k} | ${fmt(w)} | ${fmt(u)} | ${fmt(wt)} | ${fmt(h)} | ${fmt(c)} | ${fmt(t32)} | ${fmt(t16)} | ${ratio(w, t32)} | ${ratio(h, t16)} | ${ratio(c, w)} |`);
}
const shipped = all.filter((r) => SHIPPED.test(r.model) && r.device?.startsWith("webgpu") && typeof r.msPerStep === "number");
if (shipped.length) {
  const at = (plain) => [16, 64].map((k) => fmt(shipped.find((r) => r.K === k && (r.fewestKernels === "no") === plain)?.msPerStep)).join(" / ");
  lines.push("", `The shipped Llama on WebGPU, step level, K = 16 / 64: ${at(false)} ms per step in the fewest kernels, ${at(true)} in the CPU's.`);
}
const readback = [...bench.fp32, ...bench.fp16].filter((r) => typeof r.readbackKiBPerStep === "number");
if (readback.length) {
  const kib = [...new Set(readback.map((r) => r.readbackKiBPerStep))];
  const what = kib.length === 1 ? `${kib[0]} KiB per step at every K and level` : readback.map((r) => `${r.level} K=${r.K}: ${r.readbackKiBPerStep} KiB`).join("; ");
  lines.push("", `Logits and hidden states read back from the GPU: ${what} (a step downloads only its packed draws, K × 16 bytes).`);
}
const agree = [...bench.fp32, ...bench.fp16].filter((r) => r.reference);
if (agree.length) {
  lines.push("", "Logits against the fp32 model on the CPU (prefill, broadcast, 4 steps with gathers):");
  for (const r of agree) lines.push(`- ${r.model} on ${r.device}: max |Δ| ${r.maxAbsDiff} (${r.relativeToMaxLogit} of the largest logit), top-1 agreement ${r.top1Agreement}`);
}
// Each profile: its file (profile-K[-plain]_DATE.json) and the median of its later passes.
const profiles = [...read("profile.txt").matchAll(/profile-(\d+)(-plain)?_[^\n]*?json:[\s\S]*?later passes, median: wall ([\d.]+) ms, GPU ([\d.]+) ms, (\d+) dispatches/g)];
if (profiles.length) {
  lines.push("", "onnxruntime's profile of a step-level decode step (median of the later passes; GPU time from timestamp queries):");
  for (const m of profiles) lines.push(`- K = ${m[1]}${m[2] ? ", kernels as on the CPU" : ""}: wall ${Number(m[3]).toFixed(1)} ms, GPU busy ${Number(m[4]).toFixed(1)} ms, ${m[5]} dispatches`);
}
const tests = read("webgpu-tests.txt").match(/(\d+) passing[^\n]*(\n\s*\d+ pending)?(\n\s*\d+ failing)?/);
if (tests) lines.push("", `WebGPU test suite on the card: ${tests[0].replace(/\s+/g, " ").trim()}.`);
console.log(lines.join("\n"));
