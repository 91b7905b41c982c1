import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The GPU kit's last step reads what decode-bench writes: the two must keep to one format. */
describe("the GPU kit's results table", function () {
  this.timeout(120000);
  const root = join(__dirname, "../..");

  it("puts decode-bench's JSON lines and PyTorch's timings into the README table, with the goals' ratios", () => {
    const dir = mkdtempSync(join(tmpdir(), "tsmc-gpu-"));
    const bench = execFileSync(process.execPath, [join(root, "dist/decode-bench.js"), "--model", join(root, "test/fixtures/gpt2-tiny"), "--devices", "cpu", "--levels", "step", "--ks", "16", "--steps", "4", "--threads", "1"], { encoding: "utf8" });
    const measured = JSON.parse(bench.trim().split("\n")[0]);
    assert.equal(measured.K, 16);
    writeFileSync(join(dir, "decode-bench-cpu.jsonl"), bench);
    // A WebGPU line as decode-bench writes it there (this machine may have no adapter).
    writeFileSync(join(dir, "decode-bench.jsonl"), JSON.stringify({ ...measured, device: "webgpu (onnxruntime-node)", msPerStep: 2.5 }) + "\n");
    // mkmodel.py's line format (run.sh's torch-cuda.txt).
    writeFileSync(join(dir, "torch-cuda.txt"), "torch-cuda torch.float32 K=16 cache=256 median step 4.00 ms\n");
    writeFileSync(join(dir, "gpu.txt"), "Some GPU, 1.0, 1 MiB\n");
    const table = execFileSync(process.execPath, [join(root, "scripts/gpu/table.mjs"), dir, "2026-01-01"], { encoding: "utf8" });
    assert.match(table, /^Measured 2026-01-01 on Some GPU, 1\.0, 1 MiB/);
    const row16 = table.split("\n").find((l) => l.startsWith("| 16 |"))!.split("|").map((c) => c.trim());
    const cpu = measured.msPerStep < 10 ? measured.msPerStep.toFixed(2) : measured.msPerStep.toFixed(1);
    assert.equal(row16[5], cpu);
    assert.equal(row16[6], "4.00");
    assert.equal(row16[2], "2.50");
    assert.equal(row16[8], "0.63×", "WebGPU / PyTorch");
    assert.ok(table.includes(`Read back from the GPU (logits and hidden states), KiB per step: step K=16: ${measured.readbackKiBPerStep}.`), table);
  });
});
