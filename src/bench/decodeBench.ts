/**
 * `node dist/decode-bench.js --model DIR [--devices webgpu,cpu] [--ks 16,64,256] [--cache 256] [--steps 32]`:
 * twisted SMC decode speed on any decoder folder and device, for the GPU comparison (issue: GPU-backed
 * engine). Every particle shares a `--cache`-token prompt; each step proposes one token per particle with
 * a random rank-32 token twist and resamples adaptively, EOS ignored. Prints one JSON object.
 *
 * Random token ids stand in for text, so any vocabulary works (mkmodel-style exports included).
 */
import { parseArgs } from "node:util";
import { loadModel } from "../engine/lm/loadModel";
import { DeviceRequest } from "../engine/lm/device";
import { runTwistedSmc } from "../engine/smc/twistedSmc";
import { TokenTwistHead } from "../engine/twist/heads";
import { OnnxTokenTwist } from "../engine/twist/onnxTwist";
import { Rng } from "../engine/util/rng";

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: "string" }, devices: { type: "string" }, ks: { type: "string" }, cache: { type: "string" }, steps: { type: "string" }, threads: { type: "string" },
    },
  });
  if (!values.model) throw new Error("--model DIR is required");
  const devices = (values.devices ?? "cpu").split(",") as DeviceRequest[];
  const ks = (values.ks ?? "16,64").split(",").map(Number);
  const cache = Number(values.cache ?? 256);
  const steps = Number(values.steps ?? 32);
  const results: Record<string, unknown>[] = [];
  for (const device of devices) {
    const t0 = performance.now();
    let model;
    try {
      model = await loadModel(values.model, { device, threads: values.threads ? Number(values.threads) : undefined });
    } catch (e) {
      results.push({ device, error: (e as Error).message });
      continue;
    }
    const { lm } = model;
    const loadMs = performance.now() - t0;
    if (!lm.device.startsWith(device)) {
      results.push({ device, error: `not available: ${lm.deviceChoice}` });
      await lm.dispose();
      continue;
    }
    const rng = new Rng(1);
    const prompt = Array.from({ length: cache }, () => rng.int(3, lm.vocabSize - 1));
    const head = TokenTwistHead.init(lm.hiddenSize, lm.vocabSize, 32, rng);
    for (let i = 0; i < head.p.W.length; i++) head.p.W[i] = 0.05 * rng.normal();
    const twist = await OnnxTokenTwist.create(head);
    for (const K of ks) {
      const opts = {
        particles: K, level: "token" as const, resampling: "systematic" as const, essThreshold: 0.5, resample: "adaptive" as const,
        maxTokens: steps, temperature: 1, twist, isEos: () => false, isLineEnd: () => false, decode: () => "",
      };
      try {
        await runTwistedSmc(lm, prompt, { ...opts, maxTokens: 3, seed: 0 }); // warm-up
        const t = performance.now();
        const r = await runTwistedSmc(lm, prompt, { ...opts, seed: 1 });
        const ms = (performance.now() - t) / r.forwardPasses;
        results.push({ device: lm.device, K, cache, msPerStep: Math.round(ms * 100) / 100, tokensPerSecond: Math.round((K * 1000) / ms), resampled: r.resampledAt.length, loadMs: Math.round(loadMs) });
      } catch (e) {
        results.push({ device: lm.device, K, error: (e as Error).message });
      }
    }
    await twist.dispose();
    await lm.dispose();
  }
  console.log(JSON.stringify({ model: values.model, steps, results }, null, 2));
}

main().catch((e) => {
  console.error(`decode-bench: ${(e as Error).message}`);
  process.exit(1);
});
