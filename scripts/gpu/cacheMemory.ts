/**
 * `npx tsx scripts/gpu/cacheMemory.ts --model DIR [--ks 16,32,16,8] [--fixed-capacity yes|no]
 * [--budget-mb N] [--prompt 20] [--steps 3]`: how much memory the GPU holds through solve-like
 * sequences, one per K: a prompt, a broadcast to K rows, `--steps` steps, then rows dropped one at a
 * time down to one (as particles finish), a step after each drop. Run on lavapipe
 * (scripts/software-webgpu.sh), whose GPU memory is the process's: its resident set size is what the
 * GPU holds. Prints one JSON line per solve: rssMiB, and with a fixed capacity the decoder's own count
 * (retainedMiB) and how often it reopened its sessions to free what onnxruntime kept (`--budget-mb`:
 * OnnxDecoderOptions.cacheBudget).
 */
import { parseArgs } from "node:util";
import { DecoderState } from "../../src/engine/lm/causalLm";
import { loadModel } from "../../src/engine/lm/loadModel";
import { OnnxDecoder } from "../../src/engine/lm/onnxDecoder";

const { values } = parseArgs({
  options: { model: { type: "string" }, ks: { type: "string" }, "fixed-capacity": { type: "string" }, "budget-mb": { type: "string" }, prompt: { type: "string" }, steps: { type: "string" } },
});
if (!values.model) throw new Error("cacheMemory: --model DIR is required");
const ks = (values.ks ?? "16,32,16,8").split(",").map(Number);
const fixedCapacity = (values["fixed-capacity"] ?? "yes") === "yes";
const budget = values["budget-mb"] ? Number(values["budget-mb"]) * 2 ** 20 : undefined;
const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

async function main(): Promise<void> {
  const { lm } = await loadModel(values.model, { device: "webgpu", fixedCapacity, cacheBudget: budget });
  const decoder = lm instanceof OnnxDecoder ? lm : undefined;
  console.log(JSON.stringify({ device: lm.device, fixedCapacity: decoder?.fixedCapacity, loadedRssMiB: mib(process.memoryUsage().rss) }));
  const step = async (state: DecoderState) => {
    const out = await lm.step(state, Array(state.batch).fill(7));
    out.release();
    return out.state;
  };
  for (const K of ks) {
    const first = await lm.prefill(Array.from({ length: Number(values.prompt ?? 20) }, (_, i) => 5 + (i % 50)));
    first.release();
    let state: DecoderState = first.state.select(Array(K).fill(0));
    first.state.dispose();
    for (let s = 0; s < Number(values.steps ?? 3); s++) state = await step(state);
    for (let rows = K - 1; rows >= 1; rows--) {
      const kept = state.select(Array.from({ length: rows }, (_, i) => i));
      state.dispose();
      state = await step(kept);
    }
    state.dispose();
    console.log(JSON.stringify({ K, rssMiB: mib(process.memoryUsage().rss), ...(decoder?.fixedCapacity ? { retainedMiB: mib(decoder.retainedCacheBytes), reopens: decoder.sessionReopens } : {}) }));
  }
  await lm.dispose();
  console.log(JSON.stringify({ disposedRssMiB: mib(process.memoryUsage().rss) }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
