#!/usr/bin/env node
// Sums up an onnxruntime profile (decode-bench --profile PREFIX) of a WebGPU run: per forward pass, the
// wall time, the GPU time (the WebGPU provider's timestamp queries, category "Api") and the number of
// dispatches, then where the GPU time of the later passes goes, by kernel and by op type, and the CPU
// time onnxruntime spends in each node (on a GPU: issuing its work). The gap between wall and GPU time
// is what the CPU spends issuing work and waiting for the download.
// Usage: node scripts/gpu/profile-summary.mjs PROFILE.json [top]
import { readFileSync } from "node:fs";

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error("usage: node scripts/gpu/profile-summary.mjs PROFILE.json [top]");
  process.exit(2);
}
const top = Number(topArg ?? 25);
const events = JSON.parse(readFileSync(file, "utf8"));
const runs = events.filter((e) => e.cat === "Session" && e.name === "model_run").sort((a, b) => a.ts - b.ts);
const kernels = events.filter((e) => e.cat === "Api").sort((a, b) => a.ts - b.ts);
const nodes = events.filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time")).sort((a, b) => a.ts - b.ts);
const within = (run, list = kernels) => list.filter((k) => k.ts >= run.ts && k.ts < run.ts + run.dur);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const ms = (us) => (us / 1000).toFixed(3);

const perRun = runs.map((run) => {
  const ks = within(run);
  return { wall: run.dur, gpu: ks.reduce((a, k) => a + k.dur, 0), dispatches: ks.length, ks, ns: within(run, nodes) };
});
console.log(`${file}: ${runs.length} forward passes, ${kernels.length} GPU kernels timed`);
console.log("pass  wall ms  GPU ms  dispatches");
perRun.forEach((r, i) => console.log(`${String(i).padStart(4)}  ${ms(r.wall).padStart(7)}  ${ms(r.gpu).padStart(6)}  ${r.dispatches}`));
// The steady state: the later half of the passes (the first are the prefill and the warm-up).
const later = perRun.slice(Math.floor(perRun.length / 2));
console.log(
  `later passes, median: wall ${ms(median(later.map((r) => r.wall)))} ms, GPU ${ms(median(later.map((r) => r.gpu)))} ms, ${median(later.map((r) => r.dispatches))} dispatches`,
);
const tally = (key, of = (r) => r.ks) => {
  const sums = new Map();
  for (const r of later) for (const k of of(r)) sums.set(key(k), (sums.get(key(k)) ?? 0) + k.dur);
  return [...sums]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => `${ms(us / later.length).padStart(8)} ms  ${name}`);
};
console.log("\nGPU time per pass by op type:");
console.log(tally((k) => k.name.split("&")[1] ?? k.name).join("\n"));
console.log("\nGPU time per pass by kernel:");
console.log(tally((k) => k.name.split("&")[0]).join("\n"));
const cpu = later.map((r) => r.ns.reduce((a, n) => a + n.dur, 0));
console.log(`\nCPU time in nodes per pass (median): ${ms(median(cpu))} ms, by op type:`);
console.log(
  tally(
    (n) => n.args?.op_name ?? n.name,
    (r) => r.ns,
  ).join("\n"),
);
console.log("\nCPU time per pass by node:");
console.log(
  tally(
    (n) => n.name.replace(/_kernel_time$/, ""),
    (r) => r.ns,
  ).join("\n"),
);
