import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Adam } from "../../src/engine/twist/adam";
import { TokenHeadGradient, ValueHeadGradient } from "../../src/engine/twist/gradients";
import { BIAS_INIT, logSigmoid, TokenTwistHead, ValueTwistHead } from "../../src/engine/twist/heads";
import { loadTwist, modelFingerprint, saveTwist, TwistFileError } from "../../src/engine/twist/twistFile";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { Rng } from "../../src/engine/util/rng";
import { OnnxTokenTwist } from "../../src/engine/twist/onnxTwist";
import { MODEL_DIR } from "./helpers";

const H = 6,
  V = 5,
  R = 3;

function randomHidden(rng: Rng, rows: number) {
  return Float32Array.from({ length: rows * H }, () => rng.normal());
}

/** Central finite difference of f over every entry of every parameter array, in float64 arithmetic. */
function numericGrad(params: Float32Array[], f: () => number, eps = 1e-2): Float64Array[] {
  return params.map((p) => {
    const g = new Float64Array(p.length);
    for (let j = 0; j < p.length; j++) {
      const x = p[j];
      p[j] = x + eps;
      const up = f();
      p[j] = x - eps;
      const down = f();
      p[j] = x;
      g[j] = (up - down) / (2 * eps);
    }
    return g;
  });
}

function assertClose(a: Float64Array[], b: Float64Array[], tol: number) {
  a.forEach((x, i) =>
    x.forEach((v, j) => assert.ok(Math.abs(v - b[i][j]) <= tol * Math.max(1, Math.abs(b[i][j])), `param ${i}[${j}]: ${v} vs ${b[i][j]}`)),
  );
}

describe("twist heads", () => {
  it("start at one constant ψ for every prefix and token, so SMC behaves as with ψ ≡ 1", () => {
    const rng = new Rng(1);
    const hidden = randomHidden(rng, 2);
    const token = TokenTwistHead.init(H, V, R, rng).logPsiNext({ hidden, hiddenSize: H, prefixes: [[], []] });
    const value = ValueTwistHead.init(H).logValue({ hidden, hiddenSize: H, prefixes: [[], []], confidence: Float32Array.of(1, 2, 3, 4) });
    const c = logSigmoid(BIAS_INIT);
    assert.ok(token.every((x) => Math.abs(x - c) < 1e-6));
    assert.ok([...value].every((x) => Math.abs(x - c) < 1e-12));
  });

  it("token head: hand gradients match finite differences (dense and one-hot coefficients)", () => {
    const rng = new Rng(2);
    const head = TokenTwistHead.init(H, V, R, rng);
    for (const p of head.parameters()) for (let j = 0; j < p.length; j++) p[j] = 0.5 * rng.normal();
    const hidden = randomHidden(rng, 3);
    const g = [Float64Array.from({ length: V }, () => rng.normal()), Float64Array.from({ length: V }, () => rng.normal())];
    // L = Σ_rows Σ_s g[row][s]·log ψ(h_row, s) + 1.7·log ψ(h_2, token 3)
    const loss = () => {
      const out = head.logPsiNext({ hidden, hiddenSize: H, prefixes: [[], [], []] });
      let l = 0;
      for (let r = 0; r < 2; r++) for (let s = 0; s < V; s++) l += g[r][s] * out[r * V + s];
      return l + 1.7 * out[2 * V + 3];
    };
    const grad = new TokenHeadGradient(head);
    grad.add(hidden, 0, g[0]);
    grad.add(hidden, H, g[1]);
    grad.add(hidden, 2 * H, 1.7, 3);
    assertClose(grad.grads, numericGrad(head.parameters(), loss), 1e-3);
  });

  it("value head: hand gradients match finite differences for log σ(z) and z", () => {
    const rng = new Rng(3);
    const head = new ValueTwistHead({
      hiddenSize: H,
      w: Float32Array.from({ length: H }, () => rng.normal()),
      u: Float32Array.of(0.4, -0.2),
      c: Float32Array.of(0.3),
    });
    const hidden = randomHidden(rng, 2);
    const conf = Float32Array.of(0.5, 1.5, 2.0, 0.1);
    const loss = () => {
      const z = head.logits(hidden, 2, conf);
      return 0.8 * logSigmoid(z[0]) - 1.3 * z[1];
    };
    const grad = new ValueHeadGradient(head);
    grad.addLogPsi(hidden, conf, 0, 0.8);
    grad.addLogit(hidden, conf, 1, -1.3);
    assertClose(grad.grads, numericGrad(head.parameters(), loss, 1e-3), 1e-3);
  });

  it("token head in onnxruntime computes what the JavaScript head does", async () => {
    const rng = new Rng(6);
    const head = TokenTwistHead.init(32, 50, 8, rng);
    for (const p of head.parameters()) for (let j = 0; j < p.length; j++) p[j] = rng.normal();
    const hidden = Float32Array.from({ length: 5 * 32 }, () => rng.normal());
    const input = { hidden, hiddenSize: 32, prefixes: [[], [], [], [], []] };
    const fast = await OnnxTokenTwist.create(head);
    const a = head.logPsiNext(input),
      b = await fast.logPsiNext(input);
    assert.equal(b.length, a.length);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-4 * Math.max(1, Math.abs(a[i])), `${i}: ${a[i]} vs ${b[i]}`);
    await fast.dispose();
  });

  it("Adam minimises a quadratic and refuses a NaN gradient", () => {
    const x = Float32Array.of(3, -2);
    const opt = new Adam([x], 0.1);
    for (let i = 0; i < 500; i++) opt.step([Float64Array.from(x, (v) => 2 * v)]);
    assert.ok(Math.abs(x[0]) < 1e-2 && Math.abs(x[1]) < 1e-2);
    assert.throws(() => opt.step([Float64Array.of(NaN, 0)]), /non-finite gradient/);
  });

  it("round-trip through a twist file, and refuse a corrupt file or another model's twist", () => {
    const folder = openModelFolder(MODEL_DIR);
    const rng = new Rng(4);
    const head = TokenTwistHead.init(folder.config.hiddenSize, folder.config.vocabSize, 8, rng);
    head.p.W.forEach((_, j) => (head.p.W[j] = rng.normal()));
    const dir = mkdtempSync(join(tmpdir(), "tsmc-twist-"));
    const path = join(dir, "twist.json");
    saveTwist(path, head, {
      baseModel: { name: folder.name, fingerprint: modelFingerprint(folder) },
      created: "2026-11-26",
      training: { loss: "ctl" },
    });
    const back = loadTwist(path, folder);
    assert.ok(back.head instanceof TokenTwistHead);
    assert.deepEqual(back.head.p.W, head.p.W);
    assert.equal(back.meta.training?.loss, "ctl");

    const text = readFileSync(path, "utf8");
    writeFileSync(path, text.slice(0, text.length / 2));
    assert.throws(
      () => loadTwist(path, folder),
      (e: Error) => e instanceof TwistFileError && /not valid JSON.*corrupt or truncated/.test(e.message),
    );
    const doc = JSON.parse(text);
    doc.baseModel.fingerprint = "0".repeat(32);
    writeFileSync(path, JSON.stringify(doc));
    assert.throws(() => loadTwist(path, folder), /was trained for model "tiny-math-llama" \(fingerprint 0+\), not for/);
    doc.baseModel.fingerprint = modelFingerprint(folder);
    doc.params.W = doc.params.W.slice(0, 40);
    writeFileSync(path, JSON.stringify(doc));
    assert.throws(() => loadTwist(path, folder), /parameter W has \d+ bytes, expected \d+ \(the file is corrupt or truncated\)/);
  });
});
