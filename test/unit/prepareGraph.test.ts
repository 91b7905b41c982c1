import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/engine/lm/model/loadModel";
import { HIDDEN_OUTPUT, preparedDir, prepareForSmc, prepareModelBytes } from "../../src/engine/lm/onnx/prepareGraph";
import { SAMPLE_UNIFORM } from "../../src/engine/lm/onnx/samplingHead";
import { bytesField, concat, fields, message, text } from "../../src/engine/lm/onnx/protoWire";
import { hiddenOf, logitsOf, MODEL_DIR, shippedModel } from "./helpers";

/**
 * The shipped export with its last_hidden_state output removed, as many exports come; with `rename`,
 * the tensor itself is renamed too, so only the LM head's MatMul leads to it.
 */
function withoutHiddenOutput(model: Uint8Array, rename?: string): Uint8Array {
  const renameNode = (node: Uint8Array) =>
    concat(
      [...fields(node)].map((n) =>
        (n.field === 1 || n.field === 2) && text(n) === HIDDEN_OUTPUT && rename ? message([[n.field, rename]]) : n.raw,
      ),
    );
  return concat(
    [...fields(model)].map((f) => {
      if (f.field !== 7) return f.raw;
      const graph = [...fields(f.value)]
        .filter((g) => !(g.field === 12 && [...fields(g.value)].some((v) => v.field === 1 && text(v) === HIDDEN_OUTPUT)))
        .map((g) => (g.field === 1 ? bytesField(1, renameNode(g.value)) : g.raw));
      return bytesField(7, concat(graph));
    }),
  );
}

describe("SMC preparation of ONNX exports", () => {
  let dir: string;
  beforeEach(() => {
    dir = join(mkdtempSync(join(tmpdir(), "tsmc-prep-")), "m");
    cpSync(MODEL_DIR, dir, { recursive: true, filter: (src) => !src.includes(".smc.") });
  });
  afterEach(() => rmSync(join(dir, ".."), { recursive: true, force: true }));

  for (const rename of [undefined, "/model/norm/output_0"]) {
    it(`adds last_hidden_state to an export without it${rename ? " (found through the LM head)" : ""}, equal to the original's hidden state`, async () => {
      const onnx = join(dir, "onnx/model.onnx");
      writeFileSync(onnx, withoutHiddenOutput(readFileSync(onnx), rename));
      const bare = await loadModel(dir, { threads: 1, prepare: false });
      const bareOut = await bare.lm.prefill([1, 50, 60]);
      assert.equal(bareOut.readHidden, undefined);
      bareOut.state.dispose();
      await bare.lm.dispose();

      const prepared = await loadModel(dir, { threads: 1 });
      const reference = await shippedModel();
      const a = await prepared.lm.prefill([1, 50, 60]);
      const b = await reference.lm.prefill([1, 50, 60]);
      assert.deepEqual(Array.from(await hiddenOf(a)), Array.from(await hiddenOf(b)));
      assert.deepEqual(Array.from(await logitsOf(a)), Array.from(await logitsOf(b)));
      a.state.dispose();
      b.state.dispose();
      await prepared.lm.dispose();
    });
  }

  it("leaves an export with its hidden state as it is; the sampling head goes in a copy, cached and reused until the export changes", () => {
    const onnx = join(dir, "onnx/model.onnx");
    const plain = prepareForSmc(onnx, { hiddenSize: 128, vocabSize: 332 });
    assert.deepEqual(plain, {
      path: onnx,
      addedHidden: false,
      addedSampler: false,
      fusedAttention: 0,
      adoptedAttention: 0,
      fusedRotary: 0,
      rotaryPositions: 0,
      fusedRmsNorm: 0,
      fusedSkipLayerNorm: 0,
      fusedProjectionBias: 0,
      fixedCapacity: false,
      packedStep: "",
      int8Compute: 0,
      cached: false,
    });
    const sampling = prepareForSmc(onnx, { hiddenSize: 128, vocabSize: 332, sampler: true });
    assert.equal(sampling.path, join(preparedDir(onnx), "model.sampling.smc.onnx"));
    assert.deepEqual([sampling.addedHidden, sampling.addedSampler, sampling.cached], [false, true, false]);
    const inputsOf = (path: string) =>
      [...fields([...fields(readFileSync(path))].find((f) => f.field === 7)!.value)]
        .filter((f) => f.field === 11)
        .map((f) => text([...fields(f.value)].find((v) => v.field === 1)!));
    assert.ok(inputsOf(sampling.path).includes(SAMPLE_UNIFORM));
    // The cache is fed as it is: no input besides the export's own and the head's.
    assert.deepEqual(
      inputsOf(sampling.path).filter((n) => !inputsOf(onnx).includes(n)),
      [SAMPLE_UNIFORM, "sample_inverse_temperature"],
    );
    const mtime = statSync(sampling.path).mtimeMs;
    const again = prepareForSmc(onnx, { hiddenSize: 128, vocabSize: 332, sampler: true });
    assert.equal(again.cached, true);
    assert.equal(statSync(again.path).mtimeMs, mtime);
    // A prepared graph needs nothing more.
    assert.equal(prepareModelBytes(readFileSync(sampling.path), { hiddenSize: 128, vocabSize: 332, sampler: true }), undefined);
    // The export changes (its time stamp, here): the copy is made again.
    utimesSync(onnx, new Date(), new Date(Date.now() + 5000));
    assert.equal(prepareForSmc(onnx, { hiddenSize: 128, vocabSize: 332, sampler: true }).cached, false);
  });

  it("refuses bytes that are not an ONNX model", () => {
    assert.throws(() => prepareModelBytes(Uint8Array.from([0x0a, 0xff, 0xff]), { hiddenSize: 128, vocabSize: 332 }), /truncated/);
  });
});
