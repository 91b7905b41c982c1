/**
 * `npm run bench:server` (issue #20): problems solved per minute by step-level twisted SMC (K = 16, the
 * shipped line verifier) on the shipped model, through llama.cpp's llama-server against the local engine,
 * on this machine, and how the server's rate grows with solves in flight (1 / 4 / 16: it batches them).
 *
 * The server runs from the project's Debian unstable root (scripts/llama-server/setup.sh, then
 * convert.sh and serve.sh: 16 slots, 2 threads, continuous batching) on a free port of 127.0.0.1. The
 * local engine solves one problem at a time with onnxruntime's 2 threads, as the editor's engine does.
 * Every configuration solves the same BENCH_N held-out synthetic problems (default 64) after one
 * warm-up solve, and reports problems/minute, the accuracy of the weighted vote (± its standard error),
 * and requests per problem. Nothing else should run: both sides use both cores.
 *
 * Environment: BENCH_N (64), BENCH_K (16), BENCH_CONCURRENCY (1,4,16), BENCH_SEED (0), BENCH_SERVER_ARGS
 * (more llama-server flags, space-separated, after serve.sh's: "-np 64 -c 32768" gives 64 slots).
 */
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import { LlamaServer } from "../llama-server/llamaServer";
import { loadModel } from "../../src/engine/lm/model/loadModel";
import { answersMatch } from "../../src/engine/math/answer";
import { synthesize } from "../../src/engine/math/problems";
import { openRemoteModel, remoteTwistFolder } from "../../src/engine/remote/remoteModel";
import { DEFAULT_SOLVE_OPTIONS, solve, SolveModel, SolveOptions } from "../../src/engine/solve";
import { loadRemoteTwistOption } from "../../src/engine/twist/resolve";

const ROOT = resolve(__dirname, "../..");
const MODEL = join(ROOT, "models/tiny-math-llama");
const env = process.env;
const N = Number(env.BENCH_N ?? 64);
const K = Number(env.BENCH_K ?? 16);
const concurrencies = (env.BENCH_CONCURRENCY ?? "1,4,16").split(",").map(Number);
const seed = Number(env.BENCH_SEED ?? 0);

interface Row {
  backend: string;
  concurrency: number;
  problemsPerMinute: number;
  accuracy: number;
  stderr: number;
  requestsPerProblem?: number;
  forwardPassesPerProblem?: number;
}

async function measure(
  backend: string,
  model: SolveModel,
  options: SolveOptions,
  concurrency: number,
  problems: { question: string; gold: number }[],
): Promise<Row> {
  await solve(model, problems[0].question, options); // warm-up: sessions, caches, connections
  const correct: number[] = new Array(problems.length);
  let requests = 0,
    passes = 0,
    next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < problems.length) {
      const i = next++;
      const r = await solve(model, problems[i].question, { ...options, seed: seed * 1000003 + i });
      correct[i] = +(r.answer !== null && answersMatch(Number(r.answer), problems[i].gold));
      requests += r.timing.requests ?? 0;
      passes += r.timing.forwardPasses;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const minutes = (performance.now() - started) / 60000;
  const mean = correct.reduce((a, b) => a + b, 0) / problems.length;
  const row: Row = {
    backend,
    concurrency,
    problemsPerMinute: Math.round((problems.length / minutes) * 10) / 10,
    accuracy: mean,
    stderr: Math.sqrt((mean * (1 - mean)) / problems.length),
  };
  if (requests) row.requestsPerProblem = Math.round((requests / problems.length) * 10) / 10;
  if (passes) row.forwardPassesPerProblem = Math.round((passes / problems.length) * 10) / 10;
  console.error(`${backend} ×${concurrency}: ${row.problemsPerMinute} problems/min, accuracy ${(100 * mean).toFixed(1)}%`);
  return row;
}

async function main(): Promise<void> {
  execFileSync("bash", [join(ROOT, "scripts/llama-server/setup.sh")], { stdio: "inherit" });
  const problems = synthesize("test", N, seed).map((p) => ({ question: p.question, gold: p.final }));
  const rows: Row[] = [];
  const local = await loadModel(MODEL, { device: "cpu", threads: 2 });
  const server = await LlamaServer.start(ROOT, (env.BENCH_SERVER_ARGS ?? "").split(" ").filter(Boolean));
  try {
    const remote = openRemoteModel({ url: server.base, maxConcurrent: Math.max(...concurrencies, 8) });
    const twist = await loadRemoteTwistOption(undefined, remoteTwistFolder(remote), "step");
    const options: SolveOptions = {
      ...DEFAULT_SOLVE_OPTIONS,
      particles: K,
      seed,
      twist: twist?.twist,
      twistName: twist?.name ?? null,
    };
    rows.push(await measure("local engine (onnxruntime, 2 threads)", local, options, 1, problems));
    const slots = /-np (\d+)/.exec(env.BENCH_SERVER_ARGS ?? "")?.[1] ?? "16";
    for (const c of concurrencies) rows.push(await measure(`llama-server (${slots} slots, 2 threads)`, remote, options, c, problems));
  } finally {
    await server.close();
    await local.lm.dispose();
  }
  console.log(JSON.stringify({ n: N, particles: K, rows }, null, 2));
  console.log("\n| backend | solves at once | problems/minute | weighted-vote accuracy | requests (or passes) / problem |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const r of rows)
    console.log(
      `| ${r.backend} | ${r.concurrency} | ${r.problemsPerMinute} | ${(100 * r.accuracy).toFixed(1)}% ± ${(100 * r.stderr).toFixed(1)} | ${
        r.requestsPerProblem ?? `${r.forwardPassesPerProblem} passes`
      } |`,
    );
}

main().catch((e) => {
  console.error(`bench:server: ${(e as Error).message}`);
  process.exitCode = 1;
});
