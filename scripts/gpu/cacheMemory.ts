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
import { loadModel } from "../../src/engine/lm/model/loadModel";
import { OnnxDecoder } from "../../src/engine/lm/decoder/onnxDecoder";

export interface CacheMemoryOptions {
  ks: readonly number[];
  fixedCapacity: boolean;
  /** OnnxDecoderOptions.cacheBudget, in bytes. */
  cacheBudget?: number;
  capacityStep?: number;
  prompt?: number;
  steps?: number;
}

export interface SolveMemory {
  K: number;
  rssMiB: number;
  retainedMiB?: number;
  retainedBytes?: number;
  reopens?: number;
}

const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

/** Runs the sequences on WebGPU; `report` sees the device line first, then one line per solve. */
export async function measureCacheMemory(
  model: string,
  o: CacheMemoryOptions,
  report: (line: object) => void = () => undefined,
): Promise<SolveMemory[]> {
  const { lm } = await loadModel(model, {
    device: "webgpu",
    fixedCapacity: o.fixedCapacity,
    cacheBudget: o.cacheBudget,
    capacityStep: o.capacityStep,
  });
  const decoder = lm instanceof OnnxDecoder ? lm : undefined;
  report({ device: lm.device, fixedCapacity: decoder?.fixedCapacity, loadedRssMiB: mib(process.memoryUsage().rss) });
  const step = async (state: DecoderState) => {
    const out = await lm.step(state, Array(state.batch).fill(7));
    out.release();
    return out.state;
  };
  const solves: SolveMemory[] = [];
  try {
    for (const K of o.ks) {
      const first = await lm.prefill(Array.from({ length: o.prompt ?? 20 }, (_, i) => 5 + (i % 50)));
      first.release();
      let state: DecoderState = first.state.select(Array(K).fill(0));
      first.state.dispose();
      for (let s = 0; s < (o.steps ?? 3); s++) state = await step(state);
      for (let rows = K - 1; rows >= 1; rows--) {
        const kept = state.select(Array.from({ length: rows }, (_, i) => i));
        state.dispose();
        state = await step(kept);
      }
      state.dispose();
      const line: SolveMemory = {
        K,
        rssMiB: mib(process.memoryUsage().rss),
        ...(decoder?.fixedCapacity
          ? { retainedMiB: mib(decoder.retainedCacheBytes), retainedBytes: decoder.retainedCacheBytes, reopens: decoder.sessionReopens }
          : {}),
      };
      solves.push(line);
      report(line);
    }
  } finally {
    await lm.dispose();
  }
  report({ disposedRssMiB: mib(process.memoryUsage().rss) });
  return solves;
}

// Run as a script, not imported: in a bundle (the kit's test suite) every module's `module` is the bundle's.
if (require.main === module && /cacheMemory\.[jt]s$/.test(process.argv[1] ?? "")) {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      ks: { type: "string" },
      "fixed-capacity": { type: "string" },
      "budget-mb": { type: "string" },
      prompt: { type: "string" },
      steps: { type: "string" },
    },
  });
  if (!values.model) throw new Error("cacheMemory: --model DIR is required");
  const options: CacheMemoryOptions = {
    ks: (values.ks ?? "16,32,16,8").split(",").map(Number),
    fixedCapacity: (values["fixed-capacity"] ?? "yes") === "yes",
    cacheBudget: values["budget-mb"] ? Number(values["budget-mb"]) * 2 ** 20 : undefined,
    prompt: values.prompt ? Number(values.prompt) : undefined,
    steps: values.steps ? Number(values.steps) : undefined,
  };
  measureCacheMemory(values.model, options, (line) => console.log(JSON.stringify(line))).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
