// `node scripts/gpu/real-table.mjs DIR`: the markdown table of a scripts/gpu/real.sh run (its $OUT folder):
// per model, precision and K, the engine's ms per step (median decode step) on WebGPU, PyTorch CUDA eager
// fp16's on the same weights and loop, their ratio (issue #19's goal: ≤ 1.0 for fp16 at K = 16 and 64;
// q4f16 faster than fp16), and each against the memory-bandwidth floor: (the weights a step reads + the
// KV cache it reads) / the card's bandwidth. The bandwidth is the card's datasheet figure, by the name in
// gpu.txt, or BANDWIDTH_GBS (GB/s); a card not known and not given leaves the floor out. And the cache
// buffers onnxruntime keeps (decode-bench's cacheMiB: every fixed-capacity shape the run made so far, its
// budget lifted) beside the live cache at that K (capacity steps of 256 tokens), for issue #19's bound.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Datasheet memory bandwidth, GB/s, by a pattern of nvidia-smi's name. */
const BANDWIDTH = [
  [/H200/, 4800],
  [/H100.*NVL/, 3900],
  [/H100.*PCIe/, 2000],
  [/H100/, 3350], // SXM5, HBM3 ("NVIDIA H100 80GB HBM3")
  [/A100.*80GB/, 2039],
  [/A100/, 1555],
  [/L40S/, 864],
];

const lines = (file) =>
  existsSync(file)
    ? readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => l.trim().startsWith("{"))
        .map((l) => JSON.parse(l))
    : [];

export function realTable(dir, env = process.env) {
  const card = existsSync(join(dir, "gpu.txt")) ? readFileSync(join(dir, "gpu.txt"), "utf8").trim() : "";
  const given = Number(env.BANDWIDTH_GBS);
  const gbs = given > 0 ? given : BANDWIDTH.find(([re]) => re.test(card))?.[1];
  const bytes = lines(join(dir, "real-bytes.jsonl"));
  const torch = lines(join(dir, "torch-real.jsonl"));
  const bench = lines(join(dir, "real-bench.jsonl")).filter((b) => b.level === "step");
  const round = (x, d = 2) => (x === undefined || !Number.isFinite(x) ? "–" : String(Math.round(x * 10 ** d) / 10 ** d));
  const rows = [];
  for (const b of bench) {
    const pt = torch.find((t) => t.shape === b.shape && t.K === b.K);
    const by = bytes.find((x) => x.shape === b.shape && x.precision === b.precision)?.bytes;
    // The cache a mid-run step reads: every row's prompt and half the decoded tokens.
    const tokens = (b.cache ?? 256) + 16;
    const floorMs = gbs && by ? ((by.weightBytes + b.K * by.kvBytesPerToken * tokens) / (gbs * 1e9)) * 1000 : undefined;
    rows.push({
      shape: b.shape,
      precision: b.precision,
      K: b.K,
      engine: b.error ? undefined : b.msPerStepMedian,
      error: b.error,
      cache: b.fixedCapacity === "yes" ? "fixed" : "growing",
      torch: pt?.msPerStepMedian,
      floorMs,
      keptMiB: b.cacheMiB,
      liveMiB: by ? (b.K * by.kvBytesPerToken * Math.ceil(tokens / 256) * 256) / 2 ** 20 : undefined,
    });
  }
  const out = [
    `${card || "card not named"}${gbs ? `, ${gbs} GB/s (${given > 0 ? "BANDWIDTH_GBS" : "datasheet"})` : ", bandwidth unknown (set BANDWIDTH_GBS)"}`,
    "",
    "| model | precision | K | engine ms/step (WebGPU) | PyTorch CUDA fp16 ms/step | engine / PyTorch | floor ms | engine / floor | PyTorch / floor | cache kept / live MiB |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows)
    out.push(
      `| ${r.shape} | ${r.precision} | ${r.K} | ${r.error ? `error: ${r.error.slice(0, 60)}` : `${round(r.engine)} (${r.cache} cache)`} | ${round(r.torch)} | ${round(r.engine / r.torch)} | ${round(r.floorMs, 3)} | ${round(r.engine / r.floorMs, 1)} | ${round(r.torch / r.floorMs, 1)} | ${round(r.keptMiB, 0)} / ${round(r.liveMiB, 0)} |`,
    );
  const shapes = [...new Set(torch.map((t) => t.shape))];
  const checks = shapes.map((shape) => [shape, torch.find((t) => t.shape === shape && t.check)?.check]).filter(([, c]) => c);
  if (checks.length)
    out.push(
      "",
      `PyTorch's forward against the fp16 graph's logits (onnxruntime, CPU): ${checks
        .map(
          ([shape, c]) =>
            `${shape} largest difference ${round(c.maxAbsDiff, 4)} (logits up to ${round(c.maxAbsLogit, 1)}), top token agreed ${c.top1Agreement}`,
        )
        .join("; ")}.`,
    );
  return { rows, text: out.join("\n") };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = process.argv[2];
  if (!dir) {
    console.error("usage: node scripts/gpu/real-table.mjs DIR (the $OUT folder of scripts/gpu/real.sh)");
    process.exit(2);
  }
  console.log(realTable(dir).text);
}
