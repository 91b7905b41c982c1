/**
 * `node dist/decode-bench.js --model DIR [--devices webgpu,cpu] [--ks 16,64,256] [--cache 256] [--steps 32]
 * [--levels token,step] [--sample-in-graph yes|no] [--fewest-kernels yes|no] [--reference DIR --reference-device cpu]
 * [--webgpu-validation disabled|wgpuOnly|basic|full] [--profile PREFIX] [--fixed-capacity yes|no] [--pack-step yes|no]`:
 * twisted SMC decode speed on any decoder folder and device, for the GPU comparison (issue: GPU-backed
 * engine). Every particle shares a `--cache`-token prompt. Token level: each step proposes one token per
 * particle with a random rank-32 token twist and resamples adaptively. Step level: the decode loop between
 * line boundaries, where nearly all of its tokens are spent: tokens drawn from the model (inside the
 * graph where it can), no reweighting until a line ends (none does here). EOS ignored.
 *
 * `msPerStep` is the whole run (the prompt's prefill included) over its forward passes; `msPerStepMedian`
 * the median time from one decode step's start to the next's, as mkmodel.py times PyTorch's steps.
 *
 * Random token ids stand in for text, so any vocabulary works (mkmodel-style exports included).
 * Prints one JSON line per measurement as it is made, so a run cut short keeps what it finished.
 * `--fixed-capacity yes|no` asks for the KV cache at a fixed capacity or a growing one (default: the
 * decoder's, fixed on a GPU: OnnxDecoderOptions.fixedCapacity). Lines say which the decoder runs,
 * `fixedCapacity` yes or no, and with a fixed one `cacheMiB`, the cache buffers of the shapes made so
 * far that onnxruntime keeps. Its budget is lifted here: reopening the sessions between runs would time
 * shader compiles. `--pack-step no` feeds a fixed-capacity graph's small
 * per-pass inputs one by one instead of packed in one (OnnxDecoderOptions.packStep; lines say `packStep`).
 * With `--reference`, each device's logits are first compared with the reference folder's (the same
 * weights in fp32, say, for an fp16 export) through a prefill, a broadcast, held rows and resampling gathers.
 */
import { parseArgs } from "node:util";
import { CausalLM, StepOutput } from "../engine/lm/causalLm";
import { loadModel } from "../engine/lm/model/loadModel";
import { OnnxDecoder } from "../engine/lm/decoder/onnxDecoder";
import { DeviceRequest } from "../engine/lm/decoder/device";
import { webgpuValidation as parseWebGpuValidation } from "../engine/environment";
import { StepTwist } from "../engine/smc/twist";
import { runTwistedSmc } from "../engine/smc/twistedSmc";
import { TokenTwistHead } from "../engine/twist/heads";
import { OnnxTokenTwist } from "../engine/twist/onnxTwist";
import { Rng } from "../engine/util/rng";
import { median } from "./median";

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      levels: { type: "string" },
      "sample-in-graph": { type: "string" },
      "fewest-kernels": { type: "string" },
      reference: { type: "string" },
      "reference-device": { type: "string" },
      devices: { type: "string" },
      ks: { type: "string" },
      cache: { type: "string" },
      steps: { type: "string" },
      threads: { type: "string" },
      "webgpu-validation": { type: "string" },
      profile: { type: "string" },
      "fixed-capacity": { type: "string" },
      "pack-step": { type: "string" },
    },
  });
  if (!values.model) throw new Error("--model DIR is required");
  const devices = (values.devices ?? "cpu").split(",") as DeviceRequest[];
  const ks = (values.ks ?? "16,64").split(",").map(Number);
  const cache = Number(values.cache ?? 256);
  const steps = Number(values.steps ?? 32);
  const validation = values["webgpu-validation"];
  // Options of the decoder (OnnxDecoderOptions.webgpuValidation, ortProfile), not the environment.
  const webgpuValidation = parseWebGpuValidation(validation, "--webgpu-validation");
  const ortProfile = values.profile || undefined;
  const yesNo = (v: string | undefined) => (v === undefined ? undefined : v === "yes");
  const fuse = values["fewest-kernels"];
  const capacity = values["fixed-capacity"];
  const report = (r: Record<string, unknown>) =>
    console.log(
      JSON.stringify({
        model: values.model,
        steps,
        ...(validation ? { validation } : {}),
        ...(fuse ? { fewestKernels: fuse } : {}),
        ...(capacity ? { fixedCapacity: capacity } : {}),
        ...(values["pack-step"] ? { packStep: values["pack-step"] } : {}),
        ...r,
      }),
    );
  for (const device of devices) {
    const t0 = performance.now();
    let model;
    try {
      const threads = values.threads ? Number(values.threads) : undefined;
      model = await loadModel(values.model, {
        device,
        threads,
        sampleInGraph: yesNo(values["sample-in-graph"]),
        fewestKernels: yesNo(fuse),
        fixedCapacity: yesNo(capacity),
        packStep: yesNo(values["pack-step"]),
        cacheBudget: Infinity,
        webgpuValidation,
        ortProfile,
      });
    } catch (e) {
      report({ device, error: (e as Error).message });
      continue;
    }
    const { lm } = model;
    const loadMs = performance.now() - t0;
    if (!lm.device.startsWith(device)) {
      report({ device, error: `not available: ${lm.deviceChoice}` });
      await lm.dispose();
      continue;
    }
    if (values.reference) {
      const ref = await loadModel(values.reference, {
        device: (values["reference-device"] ?? "cpu") as DeviceRequest,
        threads: values.threads ? Number(values.threads) : undefined,
        webgpuValidation,
      });
      report({
        device: lm.device,
        reference: `${values.reference} on ${ref.lm.device}`,
        ...cacheKind(lm),
        ...(await agreement(lm, ref.lm)),
      });
      await ref.lm.dispose();
    }
    const rng = new Rng(1);
    const prompt = Array.from({ length: cache }, () => rng.int(3, lm.vocabSize - 1));
    const head = TokenTwistHead.init(lm.hiddenSize, lm.vocabSize, 32, rng);
    for (let i = 0; i < head.p.W.length; i++) head.p.W[i] = 0.05 * rng.normal();
    const twist = await OnnxTokenTwist.create(head);
    const valueTwist: StepTwist = { kind: "step", logValue: (input) => new Float64Array(input.prefixes.length) };
    for (const level of (values.levels ?? "token,step").split(",") as ("token" | "step")[]) {
      for (const K of ks) {
        const opts = {
          particles: K,
          level,
          resampling: "systematic" as const,
          essThreshold: 0.5,
          resample: "adaptive" as const,
          maxTokens: steps,
          temperature: 1,
          twist: level === "token" ? twist : valueTwist,
          text: { isEos: () => false, isLineEnd: () => false, decode: () => "" },
        };
        try {
          await runTwistedSmc(lm, prompt, { ...opts, maxTokens: 3, seed: 0 }); // warm-up
          const t = performance.now();
          const readBytes = () => (lm.readback ? lm.readback.logits + lm.readback.hidden : 0);
          const readBefore = readBytes();
          const starts = stepStarts(lm);
          const r = await runTwistedSmc(lm, prompt, { ...opts, seed: 1 });
          const end = performance.now();
          starts.stop();
          const ms = (end - t) / r.forwardPasses;
          const readbackKiBPerStep = lm.readback ? Math.round((readBytes() - readBefore) / 1024 / r.forwardPasses) : undefined;
          report({
            device: lm.device,
            level,
            K,
            cache,
            msPerStep: Math.round(ms * 100) / 100,
            msPerStepMedian: Math.round(median(starts.intervals(end)) * 100) / 100,
            tokensPerSecond: Math.round((K * 1000) / ms),
            resampled: r.resampledAt.length,
            drawnInGraph: Math.round((100 * r.drawnInGraph) / r.generatedTokens) / 100,
            readbackKiBPerStep,
            loadMs: Math.round(loadMs),
            ...cacheKind(lm),
          });
        } catch (e) {
          report({ device: lm.device, level, K, error: (e as Error).message });
        }
      }
    }
    await twist.dispose();
    await lm.dispose();
  }
}

/**
 * Records when each decode step of `lm` starts until `stop()` (instrumentation: `step` is wrapped on
 * this instance only). `intervals(end)`: from each start to the next, the last to `end`.
 */
function stepStarts(lm: CausalLM) {
  const own = Object.prototype.hasOwnProperty.call(lm, "step");
  const step = lm.step;
  const starts: number[] = [];
  lm.step = (...args) => {
    starts.push(performance.now());
    return step.apply(lm, args);
  };
  return {
    stop: () => (own ? (lm.step = step) : delete (lm as Partial<CausalLM>).step),
    intervals: (end: number) => starts.map((s, i) => (starts[i + 1] ?? end) - s),
  };
}

/**
 * Logits of two decoders on the same token ids: a 32-token prefill, a broadcast to 4 rows, then 4
 * steps, each followed by a resampling gather. The largest absolute difference, the largest relative
 * to the logits' range, and how often the top token agrees.
 */
/** The cache the decoder runs (a graph may not take a fixed capacity asked for), overriding what was asked. */
function cacheKind(lm: CausalLM): Record<string, unknown> {
  if (!(lm instanceof OnnxDecoder)) return {};
  return lm.fixedCapacity ? { fixedCapacity: "yes", cacheMiB: Math.round(lm.retainedCacheBytes / 2 ** 20) } : { fixedCapacity: "no" };
}

async function agreement(a: CausalLM, b: CausalLM) {
  const rng = new Rng(7);
  const vocab = Math.min(a.vocabSize, b.vocabSize);
  let maxAbs = 0,
    maxRange = 0,
    top = 0,
    rows = 0;
  const compare = (x: Float32Array, y: Float32Array, held = -1) => {
    for (let r = 0; r < x.length / a.vocabSize; r++) {
      if (r === held) continue;
      let bx = 0,
        by = 0;
      for (let i = 0; i < vocab; i++) {
        const u = x[r * a.vocabSize + i],
          v = y[r * b.vocabSize + i];
        maxAbs = Math.max(maxAbs, Math.abs(u - v));
        maxRange = Math.max(maxRange, Math.abs(v));
        if (u > x[r * a.vocabSize + bx]) bx = i;
        if (v > y[r * b.vocabSize + by]) by = i;
      }
      top += bx === by ? 1 : 0;
      rows++;
    }
  };
  const prompt = Array.from({ length: 32 }, () => rng.int(3, vocab - 1));
  const compareOutputs = async (x: StepOutput, y: StepOutput, held = -1) => {
    compare(await x.readLogits(), await y.readLogits(), held);
    x.release();
    y.release();
  };
  let [x, y] = [await a.prefill(prompt), await b.prefill(prompt)];
  await compareOutputs(x, y);
  let [sx, sy] = [x.state.select([0, 0, 0, 0]), y.state.select([0, 0, 0, 0])];
  x.state.dispose();
  y.state.dispose();
  for (let s = 0; s < 4; s++) {
    // Every other step one row is held (a finished particle), so rows differ in length after it. Its
    // own logits are never read, and a fixed-capacity cache lets its token see itself: not compared.
    const tokens: (number | null)[] = Array.from({ length: 4 }, () => rng.int(3, vocab - 1));
    const held = s % 2 ? s % 4 : -1;
    if (held >= 0) tokens[held] = null;
    [x, y] = [await a.step(sx, tokens), await b.step(sy, tokens)];
    await compareOutputs(x, y, held);
    const ancestors = Array.from({ length: 4 }, () => rng.int(0, 3));
    [sx, sy] = [x.state.select(ancestors), y.state.select(ancestors)];
    x.state.dispose();
    y.state.dispose();
  }
  sx.dispose();
  sy.dispose();
  const round = (v: number) => Number(v.toPrecision(3));
  return { maxAbsDiff: round(maxAbs), relativeToMaxLogit: round(maxAbs / maxRange), top1Agreement: round(top / rows) };
}

main().catch((e) => {
  console.error(`decode-bench: ${(e as Error).message}`);
  process.exit(1);
});
