import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/engine/lm/loadModel";
import { DEFAULT_SOLVE_OPTIONS, solve } from "../../src/engine/solve";

/**
 * Decoder folders of other shapes than the shipped model (built by scripts/fixtures/): grouped-query
 * attention, and a GPT-2-style export without last_hidden_state that the preparation step completes.
 */
for (const [name, kvHeads] of [["llama-gqa-tiny", 2], ["gpt2-tiny", 4]] as const) {
  describe(`a ${name} decoder folder`, () => {
    // A copy, so the prepared graph is written outside the repository.
    const dir = join(mkdtempSync(join(tmpdir(), "tsmc-dec-")), name);
    cpSync(join(__dirname, "../fixtures", name), dir, { recursive: true });
    const parity = JSON.parse(readFileSync(join(dir, "parity.json"), "utf8"));
    const diff = (a: ArrayLike<number>, b: number[]) => Math.max(...b.map((x, i) => Math.abs(x - a[i])));

    it("loads, reads its KV shape from config.json, and matches PyTorch through a cached step", async () => {
      const { folder, lm } = await loadModel(dir, { threads: 1 });
      assert.equal(folder.config.numKvHeads, kvHeads);
      const first = await lm.prefill(parity.prefill.input_ids[0]);
      assert.ok(diff(first.logits, parity.prefill.last_logits[0]) < 1e-3);
      assert.ok(first.hidden, "a last_hidden_state output (added by preparation when missing)");
      assert.ok(diff(first.hidden!, parity.prefill.last_hidden[0]) < 1e-3);
      const second = await lm.step(first.state.select([0, 0]), [parity.decode.input_ids[0][0], parity.decode.input_ids[0][0]]);
      assert.ok(diff(second.logits.subarray(0, lm.vocabSize), parity.decode.logits[0]) < 1e-3);
      assert.ok(diff(second.logits.subarray(lm.vocabSize), parity.decode.logits[0]) < 1e-3);
      second.state.dispose();
      await lm.dispose();
    });

    it("runs twisted SMC at token and step level", async () => {
      const model = await loadModel(dir, { threads: 1 });
      for (const level of ["token", "step"] as const) {
        const r = await solve(model, "Ava has 12 pens. How many pens does Ava have?", { ...DEFAULT_SOLVE_OPTIONS, particles: 4, maxTokens: 12, level, resample: "always" });
        assert.equal(r.particles.length, 4);
        assert.ok(r.steps > 0);
      }
      await model.lm.dispose();
    });
  });
}
