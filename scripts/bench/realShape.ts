/**
 * `npm run bench:real` (issue #18): tokens/s of the engine at K = 16 on a Qwen2.5-0.5B-shaped decoder
 * (24 layers, 896 wide, 14/2 heads, MLP 4864, 151,936 tokens, random weights) in fp32, int8 and q4 (and
 * q4 with accuracy_level 4, and q4 as onnxruntime-genai's builder writes it) on the CPU, against PyTorch
 * CPU eager plain sampling on the same fp32 weights.
 *
 * 1. Builds the folders, one set of weights, into BENCH_DIR (default: a temporary folder, removed at
 *    the end unless BENCH_KEEP=1; an existing BENCH_DIR/check.json skips the build): realShapeBuild.ts.
 * 2. Runs decode-bench (dist/decode-bench.js, from `npm run build`) on each folder: token level (twisted
 *    SMC, a random rank-32 token twist, adaptive resampling) and step level (tokens drawn from the model
 *    with no reweighting: plain sampling through the engine), BENCH_REPEATS runs of each in one process,
 *    with `--reference` the fp32 folder for the quantized ones (logit agreement).
 * 3. Runs the PyTorch reference (qwen2_reference.py) with BENCH_PYTHON (default: /tmp/torchvenv's python
 *    if present, else /usr/bin/python3), which first checks its logits against the fp32 ONNX graph's.
 * 4. Prints one JSON summary, then a markdown table.
 *
 * ms/step is the median time from one decode step's start to the next (decode-bench's msPerStepMedian,
 * the PyTorch script's per-step median), the best of the repeats (other work on the machine only adds
 * time: each part first waits for a quiet machine, and the summary says how many cores other processes
 * used while it ran); tokens/s = K / (ms/step / 1000).
 *
 * Environment: BENCH_DIR, BENCH_KEEP, BENCH_THREADS (2), BENCH_K (16), BENCH_STEPS (32), BENCH_PROMPT
 * (64), BENCH_REPEATS (3), BENCH_VARIANTS (fp32,int8,q4,q4-acc4,genai-q4; a "+fused" suffix, fp32+fused, runs
 * that folder with decode-bench's --fewest-kernels yes: attention, rotary and norms fused as on a GPU),
 * BENCH_PYTHON, BENCH_TOLERANCE (1e-3, the largest |logit| difference allowed between PyTorch and the
 * fp32 graph), BENCH_AGREEMENT (1: compare the quantized variants' logits with fp32's; 0: skip),
 * BENCH_QUIET_WAIT (120 s), BENCH_NICE (0; the timed parts run under `nice -n BENCH_NICE`, and this
 * session's autogroup at it: -10, as root, on a machine shared with other work).
 */
import { spawnSync, SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(__dirname, "../..");
const env = process.env;
const threads = Number(env.BENCH_THREADS ?? 2);
const K = Number(env.BENCH_K ?? 16);
const steps = Number(env.BENCH_STEPS ?? 32);
const promptLength = Number(env.BENCH_PROMPT ?? 64);
const repeats = Number(env.BENCH_REPEATS ?? 3);
const variants = (env.BENCH_VARIANTS ?? "fp32,int8,q4,q4-acc4,genai-q4").split(",");
const tolerance = env.BENCH_TOLERANCE ?? "1e-3";
const agreement = (env.BENCH_AGREEMENT ?? "1") !== "0";
/**
 * The timed parts' nice value: on a shared machine, -10 (as root) keeps other work from taking their
 * cores. Linux schedules each session's processes as one group (autogroup), so the session's group is
 * given it too (/proc/self/autogroup: this run's own session only), or other sessions would still share
 * the cores equally with it.
 */
const niceness = Number(env.BENCH_NICE ?? 0);
function raiseOwnSession(): string {
  if (!niceness) return "none";
  try {
    writeFileSync("/proc/self/autogroup", String(niceness));
    return `nice ${niceness}, its session's autogroup too`;
  } catch (e) {
    return `nice ${niceness} (its session's autogroup unchanged: ${(e as Error).message})`;
  }
}
const python = env.BENCH_PYTHON ?? (existsSync("/tmp/torchvenv/bin/python") ? "/tmp/torchvenv/bin/python" : "/usr/bin/python3");

/** A variant's model folder under BENCH_DIR: its name less a "+fused" suffix. */
const folderOf = (variant: string) => variant.replace(/\+fused$/, "");
const log = (line: string) => console.error(`[bench:real] ${line}`);
const round = (x: number, digits = 2) => Number(x.toFixed(digits));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Busy and total jiffies of all CPUs (/proc/stat), to see what else ran during a part. */
function cpuJiffies(): { busy: number; total: number } | undefined {
  try {
    const [, ...v] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - v[3] - v[4], total }; // less idle and iowait
  } catch {
    return undefined;
  }
}

/** The cores busy (all processes) between two readings. */
function busyCores(a = cpuJiffies(), b = cpuJiffies()): number | undefined {
  if (!a || !b || b.total === a.total) return undefined;
  return round(((b.busy - a.busy) / (b.total - a.total)) * cpus().length, 2);
}

/**
 * Waits up to BENCH_QUIET_WAIT s (default 120) for the machine to be quiet (under 0.2 cores busy over
 * 2 s), so a part is not timed beside other work; returns the cores busy when it stopped waiting.
 */
function waitQuiet(): number | undefined {
  const deadline = Date.now() + Number(env.BENCH_QUIET_WAIT ?? 120) * 1000;
  for (;;) {
    const a = cpuJiffies();
    spawnSync("sleep", ["2"]);
    const busy = busyCores(a, cpuJiffies());
    if (busy === undefined || busy < 0.2 || Date.now() > deadline) return busy;
    log(`waiting for a quiet machine (${busy} cores busy)`);
    spawnSync("sleep", ["10"]);
  }
}

/**
 * What ran besides each timed part: the cores busy just before it (waitQuiet), and the cores that
 * processes other than the part's used on average while it ran (all cores' busy time, from /proc/stat,
 * less the part's own CPU time, from /usr/bin/time).
 */
const contention: Record<string, { busyBefore?: number; othersDuring?: number }> = {};
const TIME = "/usr/bin/time";

function run(command: string, args: string[], extraEnv: Record<string, string> = {}, part?: string): SpawnSyncReturns<string> {
  const busyBefore = part ? waitQuiet() : undefined;
  const timeFile = part && existsSync(TIME) ? join(tmpdir(), `bench-real-time-${process.pid}`) : undefined;
  log(`${command} ${args.join(" ")}`);
  const before = cpuJiffies();
  const t0 = performance.now();
  let [cmd, argv] = timeFile ? [TIME, ["-f", "%U %S", "-o", timeFile, command, ...args]] : [command, args];
  if (part && niceness) [cmd, argv] = ["nice", ["-n", String(niceness), cmd, ...argv]];
  const r = spawnSync(cmd, argv, {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...env, ...extraEnv },
    maxBuffer: 64 * 2 ** 20,
    stdio: ["ignore", "pipe", "inherit"],
  });
  if (r.error) throw r.error;
  if (part) {
    const wall = (performance.now() - t0) / 1000;
    const after = cpuJiffies();
    let othersDuring: number | undefined;
    if (timeFile && before && after && existsSync(timeFile)) {
      const own = readFileSync(timeFile, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
      const allBusy = ((after.busy - before.busy) / (after.total - before.total)) * cpus().length * wall;
      othersDuring = round(Math.max(0, allBusy - own[0] - own[1]) / wall);
      rmSync(timeFile, { force: true });
    }
    contention[part] = { busyBefore, othersDuring };
  }
  return r;
}

/** Bytes under a path. */
function sizeOf(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((n, f) => n + sizeOf(join(path, f)), 0);
}

const MiB = (bytes: number) => Math.round(bytes / 2 ** 20);

interface Line {
  level?: string;
  K?: number;
  msPerStep?: number;
  msPerStepMedian?: number;
  drawnInGraph?: number;
  resampled?: number;
  loadMs?: number;
  maxAbsDiff?: number;
  relativeToMaxLogit?: number;
  top1Agreement?: number;
  error?: string;
}

/** decode-bench on one folder: both levels, `repeats` runs each, in one process. */
function engine(dir: string, variant: string) {
  const args = [
    join(ROOT, "dist/decode-bench.js"),
    "--model",
    join(dir, folderOf(variant)),
    "--devices",
    "cpu",
    "--ks",
    Array.from({ length: repeats }, () => K).join(","),
    "--levels",
    "token,step",
    "--steps",
    String(steps),
    "--cache",
    String(promptLength),
    "--threads",
    String(threads),
  ];
  if (variant.endsWith("+fused")) args.push("--fewest-kernels", "yes");
  if (agreement && variant !== "fp32") args.push("--reference", join(dir, "fp32"));
  const t0 = performance.now();
  const r = run(process.execPath, args, { TWISTED_SMC_CACHE_DIR: join(dir, "cache") }, variant);
  const lines = r.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);
  const failed = lines.find((l) => l.error);
  if (r.status !== 0 || failed) throw new Error(`decode-bench on ${variant} failed: ${failed?.error ?? `exit ${r.status}`}`);
  const level = (name: string) => {
    const runs = lines.filter((l) => l.level === name);
    return {
      msPerStep: round(Math.min(...runs.map((l) => l.msPerStepMedian!))),
      msPerStepRuns: runs.map((l) => l.msPerStepMedian!),
      msPerStepWithPrefill: round(median(runs.map((l) => l.msPerStep!))),
      drawnInGraph: runs[0]?.drawnInGraph,
      resampled: runs.map((l) => l.resampled!),
    };
  };
  const ref = lines.find((l) => l.maxAbsDiff !== undefined);
  return {
    token: level("token"),
    step: level("step"),
    loadMs: lines.find((l) => l.loadMs !== undefined)?.loadMs,
    ...(ref
      ? { vsFp32: { maxAbsDiff: ref.maxAbsDiff, relativeToMaxLogit: ref.relativeToMaxLogit, top1Agreement: ref.top1Agreement } }
      : {}),
    wallS: round((performance.now() - t0) / 1000, 0),
  };
}

function pytorch(dir: string) {
  const r = run(
    python,
    [
      join(ROOT, "scripts/bench/qwen2_reference.py"),
      "--dir",
      dir,
      "--config",
      join(dir, "fp32", "config.json"),
      "--k",
      String(K),
      "--steps",
      String(steps),
      "--prompt",
      String(promptLength),
      "--threads",
      String(threads),
      "--repeats",
      String(repeats),
      "--tolerance",
      tolerance,
    ],
    {},
    "pytorch",
  );
  const out = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status === 3) throw new Error(`PyTorch does not reproduce the fp32 ONNX graph: ${out}`);
  if (r.status !== 0) throw new Error(`the PyTorch reference failed (exit ${r.status})`);
  return JSON.parse(out) as Record<string, unknown> & { msPerStepBest: number };
}

function main() {
  const dir = env.BENCH_DIR ? resolve(env.BENCH_DIR) : mkdtempSync(join(tmpdir(), "bench-real-"));
  const removeAfter = !env.BENCH_DIR && env.BENCH_KEEP !== "1";
  mkdirSync(dir, { recursive: true });
  const priority = raiseOwnSession();
  log(`priority: ${priority}`);
  try {
    if (!existsSync(join(dir, "check.json"))) {
      const b = run(join(ROOT, "node_modules/.bin/tsx"), [join(ROOT, "scripts/bench/realShapeBuild.ts"), dir, String(threads)]);
      if (b.status !== 0) throw new Error(`building the models failed (exit ${b.status})`);
    } else log(`reusing the models in ${dir}`);
    const sizes = Object.fromEntries(
      [...new Set([...variants.map(folderOf), "weights.safetensors"])]
        .filter((v) => existsSync(join(dir, v)))
        .map((v) => [v, MiB(sizeOf(join(dir, v)))]),
    );
    log(`sizes (MiB): ${JSON.stringify(sizes)}`);
    const results: Record<string, ReturnType<typeof engine>> = {};
    for (const v of variants) {
      results[v] = engine(dir, v);
      log(`${v}: ${JSON.stringify({ ...results[v], coresBusy: contention[v] })}`);
      rmSync(join(dir, "cache"), { recursive: true, force: true }); // its prepared copy (up to 2 GB)
    }
    const torch = pytorch(dir);
    log(`pytorch: ${JSON.stringify({ ...torch, coresBusy: contention.pytorch })}`);
    const tps = (ms: number) => round((K * 1000) / ms, 1);
    const rows = variants.flatMap((v) =>
      (["step", "token"] as const).map((level) => {
        const ms = results[v][level].msPerStep;
        return {
          variant: v,
          level: level === "step" ? "plain sampling (step level)" : "twisted SMC (token level)",
          msPerStep: ms,
          tokensPerSecond: tps(ms),
          overTorch: round(ms / torch.msPerStepBest),
        };
      }),
    );
    const best = rows.reduce((a, b) => (b.msPerStep < a.msPerStep ? b : a));
    const smcRows = rows.filter((r) => r.level.startsWith("twisted"));
    const bestSmc = smcRows.reduce((a, b) => (b.msPerStep < a.msPerStep ? b : a));
    const ms = (v: string) => results[v]?.token.msPerStep;
    const summary = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
      model: "Qwen2.5-0.5B shape, random weights",
      K,
      steps,
      prompt: promptLength,
      repeats,
      threads,
      sizesMiB: sizes,
      priority,
      coresBusy: contention,
      engine: results,
      pytorch: torch,
      rows,
      goals: {
        "best engine variant (twisted SMC) at least as fast as PyTorch eager": `${bestSmc.variant} ${bestSmc.overTorch}× PyTorch's time: ${
          bestSmc.overTorch <= 1 ? "met" : "not met"
        }`,
        "q4 no slower than fp32":
          ms("q4") && ms("fp32")
            ? `${round(ms("q4")! / ms("fp32")!)}× fp32's time: ${ms("q4")! <= ms("fp32")! ? "met" : "not met"}`
            : "not measured",
        ...(ms("q4-acc4") && ms("fp32")
          ? {
              "q4, accuracy_level 4, no slower than fp32": `${round(ms("q4-acc4")! / ms("fp32")!)}× fp32's time: ${ms("q4-acc4")! <= ms("fp32")! ? "met" : "not met"}`,
            }
          : {}),
      },
      fastest: `${best.variant}, ${best.level}`,
    };
    console.log(JSON.stringify(summary, null, 2));
    console.log();
    console.log(`| variant | file MiB | decode | ms/step | tokens/s | / PyTorch eager |`);
    console.log(`| --- | --- | --- | --- | --- | --- |`);
    for (const r of rows)
      console.log(
        `| ${r.variant} | ${sizes[folderOf(r.variant)] ?? "–"} | ${r.level} | ${r.msPerStep} | ${r.tokensPerSecond} | ${r.overTorch} |`,
      );
    console.log(
      `| PyTorch ${torch.torch} eager, fp32 | ${sizes["weights.safetensors"] ?? "–"} | plain sampling | ${torch.msPerStepBest} | ${tps(torch.msPerStepBest)} | 1 |`,
    );
  } finally {
    if (removeAfter) rmSync(dir, { recursive: true, force: true });
  }
}

try {
  main();
} catch (e) {
  console.error(`bench:real: ${(e as Error).message}`);
  process.exit(1);
}
