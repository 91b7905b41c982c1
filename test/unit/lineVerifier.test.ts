import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArithmeticLine, arithmeticLines, digitColumns, encodeLine, BLANK } from "../../src/engine/twist/arithmeticLines";
import { LineVerifier } from "../../src/engine/twist/lineVerifier";
import { BIAS_INIT, logSigmoid } from "../../src/engine/twist/heads";
import { Adam } from "../../src/engine/twist/adam";
import { loadTwist, saveTwist, TwistFileError } from "../../src/engine/twist/twistFile";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { mineLineLabels } from "../../src/engine/train/lineLabels";
import { fitKnownAnswerFloor } from "../../src/engine/train/knownAnswerFloor";
import { prmGradient } from "../../src/engine/train/objectives";
import { PrmData } from "../../src/engine/train/objectives/prm";
import { Rng } from "../../src/engine/util/rng";
import { MODEL_DIR } from "./helpers";

const D = 4;

/** Labelled lines as the prm objective's finished lines (weight 1 each, no contrasts). */
const finished = (lines: { line: ArithmeticLine; label: 0 | 1 }[]) => lines.map((l) => ({ ...l, length: l.line.c.length, weight: 1 }));

/** Writes `doc` with each bad value of one of its params to `path`: loading it must fail in one line naming the file. */
function assertParamRefused(path: string, doc: { params: object }, field: string, bads: unknown[], message: RegExp): void {
  for (const bad of bads) {
    writeFileSync(path, JSON.stringify({ ...doc, params: { ...doc.params, [field]: bad } }));
    assert.throws(
      () => loadTwist(path),
      (e: Error) => e instanceof TwistFileError && e.message.startsWith(path) && message.test(e.message) && !e.message.includes("\n"),
      String(bad),
    );
  }
}

describe("line verifier", () => {
  it("finds the arithmetic lines of a solution, in the model's and in GSM8K's notation", () => {
    assert.deepEqual(arithmeticLines("12 + 30 = 42\n42 - 7 = 35\n#### 35"), [
      { a: "12", op: "+", b: "30", c: "42" },
      { a: "42", op: "-", b: "7", c: "35" },
    ]);
    assert.deepEqual(arithmeticLines("Natalia sold 48/2 = <<48/2=24>>24 clips in May."), [{ a: "48", op: "/", b: "2", c: "24" }]);
    assert.deepEqual(arithmeticLines("3 × 1,200 = 3,600"), [{ a: "3", op: "*", b: "1200", c: "3600" }]);
    // Decimals are not digit columns: such lines are skipped, never misread.
    assert.deepEqual(arithmeticLines("2.5 * 4 = 10\n4 * 2.5 = 10\n10 / 4 = 2.5\nno numbers here"), []);
  });

  it("reads numbers by column, units first, blank beyond the leading digit", () => {
    assert.deepEqual(digitColumns("42", 4), [2, 4, BLANK, BLANK]);
    assert.deepEqual(digitColumns("12345", 4), [5, 4, 3, 2]);
    assert.deepEqual([...encodeLine({ a: "42", op: "-", b: "7", c: "35" }, 2)], [1, 2, 4, 7, BLANK, 5, 3]);
  });

  it("starts with the same ψ for every line, so it cannot steer before training", () => {
    const v = LineVerifier.init(D, new Rng(1));
    const x = v.logValueOfText("12 + 30 = 42\n");
    assert.ok(Math.abs(x - logSigmoid(BIAS_INIT)) < 1e-12);
    assert.equal(v.logValueOfText("12 + 30 = 41\n"), x);
    assert.equal(
      v.logValue({ hiddenSize: 0, prefixes: [[1], [2, 3]], decode: (t) => (t.length === 1 ? "1 + 1 = 2\n" : "1 + 1 = 2\n2 * 2 = 4\n") })[1],
      2 * x,
    );
    assert.throws(() => v.logValue({ hiddenSize: 0, prefixes: [[1]] }), /must pass decode/);
  });

  for (const below of [2, 3] as const)
    it(`hand gradients match finite differences (${below} digits read from the column below)`, () => {
      const rng = new Rng(2);
      const v = LineVerifier.init(3, rng, 3, 5, below);
      for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = 0.7 * rng.normal();
      // Finite differences step over ReLU kinks only if a pre-activation lies within eps of zero.
      const lines = ["907 - 48 = 859", "12 * 7 = 84", "5 + 996 = 1001", "81 / 9 = 9"].map((t) => encodeLine(arithmeticLines(t)[0], 3));
      const coeff = [0.8, -1.1, 0.4, 1.9];
      const f = () => lines.reduce((s, l, i) => s + coeff[i] * v.lineLogit(l), 0);
      const grads = v.parameters().map((p) => new Float64Array(p.length));
      lines.forEach((l, i) => v.addGradient(grads, l, coeff[i]));
      v.parameters().forEach((p, i) => {
        for (let j = 0; j < p.length; j++) {
          const x = p[j],
            eps = 1e-3;
          p[j] = x + eps;
          const up = f();
          p[j] = x - eps;
          const down = f();
          p[j] = x;
          const numeric = (up - down) / (2 * eps);
          assert.ok(
            Math.abs(numeric - grads[i][j]) <= 1e-3 * Math.max(1, Math.abs(numeric)),
            `param ${i}[${j}]: ${grads[i][j]} vs ${numeric}`,
          );
        }
      });
    });

  for (const below of [2, 3] as const)
    it(`batched gradients (each shared column back-propagated once) equal the sum of the lines' gradients (below ${below})`, () => {
      const rng = new Rng(3);
      const v = LineVerifier.init(4, rng, 4, 6, below);
      for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = 0.7 * rng.normal();
      // A line, its one-digit contrasts and a repeat share most columns.
      const texts = ["907 - 48 = 859", "907 - 48 = 869", "907 - 48 = 858", "907 - 48 = 859", "12 * 7 = 84", "12 * 7 = 94"];
      const lines = texts.map((t) => encodeLine(arithmeticLines(t)[0], 4));
      const coeff = [0.8, -1.1, 0.4, 1.9, -0.3, 0.6];
      const oneByOne = v.parameters().map((p) => new Float64Array(p.length));
      lines.forEach((l, i) => v.addGradient(oneByOne, l, coeff[i]));
      const batched = v.parameters().map((p) => new Float64Array(p.length));
      v.addGradients(batched, lines, coeff);
      let nonZero = 0;
      oneByOne.forEach((g, i) =>
        g.forEach((x, j) => {
          if (x !== 0) nonZero++;
          assert.ok(Math.abs(x - batched[i][j]) <= 1e-12 * Math.max(1, Math.abs(x)), `param ${i}[${j}]: ${batched[i][j]} vs ${x}`);
        }),
      );
      assert.ok(nonZero > 100, `only ${nonZero} gradient entries are non-zero`);
    });

  it("mines line labels from outcomes: right samples' lines, and other results for the same expression", () => {
    const texts = [
      "52 - 17 = 35\n35 * 2 = 70\n#### 70",
      "52 - 17 = 45\n45 * 2 = 90\n#### 90",
      "52 - 17 = 35\n35 * 2 = 60\n#### 60",
      "50 - 17 = 33\n#### 33",
    ];
    const labels = mineLineLabels(texts, [true, false, false, false]).map(
      (l) => `${l.line.a}${l.line.op}${l.line.b}=${l.line.c}:${l.label}`,
    );
    // "45 * 2 = 90" and "50 - 17 = 33" compute expressions no right sample computed: unlabelled.
    assert.deepEqual(labels, ["52-17=35:1", "35*2=70:1", "52-17=45:0", "52-17=35:1", "35*2=60:0"]);
    // Right samples that disagree on an expression label neither result.
    assert.deepEqual(
      mineLineLabels(["2 + 2 = 4\n#### 4", "2 + 2 = 5\n#### 4", "2 + 2 = 3\n#### 1"], [true, true, false]).map((l) => l.label),
      [1, 1],
    );
  });

  it("trains only on the lines it reads when it scores: a number beyond its columns is left out, never cut to its low digits", () => {
    const v = LineVerifier.init(D, new Rng(6));
    for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = 0.3 * Math.sin(j + p.length);
    // Mined from outcomes: "9999 + 1 = 10000" of a right sample is right; cut to four columns it would
    // read "9999 + 1 = 0000", a wrong line, and teach the verifier that it is right.
    const wide = mineLineLabels(["9999 + 1 = 10000\n#### 10000", "25000 - 5000 = 20000\n#### 20000"], [true, true]);
    assert.deepEqual(
      wide.map((l) => l.label),
      [1, 1],
    );
    assert.equal(v.logValueOfText("9999 + 1 = 10000\n25000 - 5000 = 20000\n"), 0);
    assert.equal(v.encodeLine(wide[0].line), undefined);
    const none = prmGradient(v, [{ lines: finished(wide) } as unknown as PrmData]);
    assert.equal(none.loss, 0);
    for (const g of none.grads) assert.ok(g.every((x) => x === 0));
    // Beside a line it reads, the gradient is that line's alone.
    const narrow = mineLineLabels(["12 + 30 = 42\n#### 42"], [true]);
    const mixed = prmGradient(v, [{ lines: finished([...wide, ...narrow]) } as unknown as PrmData]);
    const alone = prmGradient(v, [{ lines: finished(narrow) } as unknown as PrmData]);
    assert.equal(mixed.loss, alone.loss);
    mixed.grads.forEach((g, i) => assert.deepEqual(g, alone.grads[i]));
    assert.deepEqual(v.encodeLine(narrow[0].line), v.encode("12 + 30 = 42\n")[0]);
  });

  it("learns to tell right subtraction lines from tens-digit slips, from labelled lines alone", () => {
    const rng = new Rng(3);
    const line = () => {
      const a = rng.int(20, 999),
        b = rng.int(1, a),
        right = rng.uniform() < 0.5;
      // The slips of a small model: a wrong tens digit (a lost or extra borrow).
      const slip = (rng.uniform() < 0.5 ? -10 : 10) * rng.int(1, 2);
      const c = right || a - b + slip < 0 ? a - b : a - b + slip;
      return { line: { a: String(a), op: "-" as const, b: String(b), c: String(c) }, label: (c === a - b ? 1 : 0) as 0 | 1 };
    };
    const v = LineVerifier.init(D, new Rng(4));
    const adam = new Adam(v.parameters(), 0.02);
    for (let step = 0; step < 400; step++) {
      const data = [{ lines: finished(Array.from({ length: 64 }, line)) } as unknown as PrmData];
      adam.step(prmGradient(v, data).grads);
    }
    const test = Array.from({ length: 1000 }, line);
    const accuracy = test.filter((t) => (v.lineLogit(encodeLine(t.line, D)) > 0 ? 1 : 0) === t.label).length / test.length;
    assert.ok(accuracy > 0.9, `held-out accuracy ${accuracy}`);
  });

  it("round-trips through a twist file and refuses a corrupt one", () => {
    const folder = openModelFolder(MODEL_DIR);
    const v = LineVerifier.init(D, new Rng(5), 4, 6);
    for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = new Rng(j).normal();
    const dir = mkdtempSync(join(tmpdir(), "tsmc-verifier-"));
    const path = join(dir, "twist.json");
    saveTwist(path, v, { baseModel: { name: folder.name, fingerprint: "x" }, created: "now" });
    assert.throws(() => loadTwist(path, folder), /was trained for model/);
    const { head, meta } = loadTwist(path);
    assert.equal(meta.architecture, "line-verifier");
    assert.ok(head instanceof LineVerifier);
    assert.equal(head.logValueOfText("907 - 48 = 859\n"), v.logValueOfText("907 - 48 = 859\n"));
    // A verifier that reads the result's digit below: its file says so, and a file without the field
    // (every verifier before it) reads 2 digits.
    const v3 = LineVerifier.init(D, new Rng(6), 4, 6, 3);
    for (const p of v3.parameters()) for (let j = 0; j < p.length; j++) p[j] = new Rng(j + 1).normal();
    const path3 = join(dir, "twist3.json");
    saveTwist(path3, v3, { baseModel: { name: folder.name, fingerprint: "x" }, created: "now" });
    const doc3 = JSON.parse(readFileSync(path3, "utf8"));
    assert.equal(doc3.verifier.below, 3);
    assert.equal(JSON.parse(readFileSync(path, "utf8")).verifier.below, undefined);
    const head3 = loadTwist(path3).head as LineVerifier;
    assert.equal(head3.p.below, 3);
    // c's tens digit enters the hundreds column's term too: 859 and 869 differ in two columns.
    for (const t of ["907 - 48 = 859\n", "907 - 48 = 869\n"]) assert.equal(head3.logValueOfText(t), v3.logValueOfText(t));
    doc3.verifier.below = 4;
    writeFileSync(path3, JSON.stringify(doc3));
    assert.throws(
      () => loadTwist(path3),
      (e: Error) => e instanceof TwistFileError && /"below" must be 2 or 3, got 4/.test(e.message),
    );
    delete doc3.verifier.below;
    writeFileSync(path3, JSON.stringify(doc3));
    assert.throws(
      () => loadTwist(path3),
      (e: Error) => e instanceof TwistFileError && /parameter Q has .* bytes/.test(e.message),
    );
    const doc = JSON.parse(readFileSync(path, "utf8"));
    doc.params.Q = doc.params.Q.slice(0, 40);
    writeFileSync(path, JSON.stringify(doc));
    assert.throws(
      () => loadTwist(path),
      (e: Error) => e instanceof TwistFileError && /parameter Q has .* bytes/.test(e.message),
    );
  });

  it("carries a final power in its file: version 3, φ^γ as the final potential, the twist itself unchanged", () => {
    const v = LineVerifier.init(D, new Rng(5), 4, 6);
    for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = new Rng(j).normal();
    const powered = v.withFinalPower(2);
    const text = "907 - 48 = 859\n859 + 1 = 870\n";
    assert.ok(v.logValueOfText(text) < -0.1, "the lines are doubted (the check can fail)");
    assert.equal(powered.logValueOfText(text), v.logValueOfText(text), "ψ is φ, whatever the power");
    assert.equal(powered.finalLogValue(text), 2 * v.logValueOfText(text));
    assert.equal(v.finalLogValue(text), v.logValueOfText(text));
    assert.equal(powered.copy().p.finalPower, 2, "a copy keeps it");
    assert.equal(powered.withFinalPower(1).p.finalPower, undefined, "1 is no power at all");
    assert.throws(() => v.withFinalPower(0), /finalPower must be a number in \(0, 16\]/);
    const dir = mkdtempSync(join(tmpdir(), "tsmc-power-"));
    const path = join(dir, "twist.json");
    const meta = { baseModel: { name: "m", fingerprint: "f" }, created: "now" };
    saveTwist(path, powered, meta);
    const doc = JSON.parse(readFileSync(path, "utf8"));
    // Version 3, so that a release that reads no power refuses the file rather than end solutions on φ.
    assert.equal(doc.version, 3);
    assert.equal((loadTwist(path).head as LineVerifier).finalLogValue(text), powered.finalLogValue(text));
    saveTwist(path, v, meta);
    assert.equal(JSON.parse(readFileSync(path, "utf8")).version, 1);
    assertParamRefused(path, doc, "finalPower", [0, -1, 17, "2"], /finalPower must be a number in \(0, 16\]/);
  });
  it("reads lines with a floor when the answer is known, fitted to outcomes; the file keeps it, the unknown answer's φ^γ does not see it", () => {
    const v = LineVerifier.init(D, new Rng(5), 4, 6);
    for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = new Rng(j).normal();
    const text = "907 - 48 = 859\n859 + 1 = 870\n";
    const logits = v.encode(text).map((l) => v.lineLogit(l));
    assert.ok(v.logValueOfText(text) < -0.1, "the lines are doubted (the check can fail)");
    assert.equal(v.forKnownAnswer(), v, "without a floor the known answer's twist is the verifier itself");
    const floored = v.withFinalPower(2).withKnownAnswerFloor(0.1);
    assert.equal(floored.logValueOfText(text), v.logValueOfText(text), "the twist for an unknown answer is φ's");
    const known = floored.forKnownAnswer();
    const expected = logits.reduce((s, l) => s + Math.log(0.1 + 0.9 / (1 + Math.exp(-l))), 0);
    assert.ok(Math.abs(known.logValueOfText(text) - expected) < 1e-12);
    assert.ok(known.logValueOfText(text) > v.logValueOfText(text));
    assert.equal(known.finalLogValue(text), 2 * v.logValueOfText(text), "φ^γ, never floored");
    assert.equal(known.forKnownAnswer(), known);
    assert.equal(floored.copy().p.knownAnswerFloor, 0.1, "a copy keeps it");
    assert.equal(floored.withKnownAnswerFloor(0).p.knownAnswerFloor, undefined, "0 is no floor at all");
    for (const bad of [1, -0.1, Number.NaN])
      assert.throws(() => v.withKnownAnswerFloor(bad), /knownAnswerFloor must be a number in \(0, 1\)/);
    const dir = mkdtempSync(join(tmpdir(), "tsmc-floor-"));
    const path = join(dir, "twist.json");
    saveTwist(path, floored, { baseModel: { name: "m", fingerprint: "f" }, created: "now" });
    const loaded = loadTwist(path).head as LineVerifier;
    assert.equal(loaded.p.knownAnswerFloor, 0.1);
    assert.equal(loaded.forKnownAnswer().logValueOfText(text), known.logValueOfText(text));
    const doc = JSON.parse(readFileSync(path, "utf8"));
    assertParamRefused(path, doc, "knownAnswerFloor", [0, 1, 2, "0.1"], /knownAnswerFloor must be a number in \(0, 1\)/);
  });

  it("fits the known-answer floor that made the outcomes", () => {
    const v = LineVerifier.init(D, new Rng(7), 4, 6);
    for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = 2 * new Rng(j + 100).normal();
    const rng = new Rng(8);
    const draw = (floor: number) => {
      const outcomes = [];
      for (let n = 0; n < 600; n++) {
        const texts: string[] = [];
        const correct: boolean[] = [];
        for (let k = 0; k < 8; k++) {
          const a = 10 + Math.floor(rng.uniform() * 900),
            b = 1 + Math.floor(rng.uniform() * 90),
            c = a + b + (rng.uniform() < 0.5 ? 0 : Math.floor(rng.uniform() * 20) - 10);
          const text = `${a} + ${b} = ${c}\n${c} - ${b} = ${a}\n`;
          const right = v.encode(text).reduce((s, l) => s * (floor + (1 - floor) / (1 + Math.exp(-v.lineLogit(l)))), 1);
          texts.push(text);
          correct.push(rng.uniform() < right);
        }
        outcomes.push({ texts, correct });
      }
      return fitKnownAnswerFloor(v, outcomes);
    };
    const fit = draw(0.2);
    assert.ok(Math.abs(fit.floor - 0.2) < 0.04, `fitted ${fit.floor}`);
    assert.ok(fit.after > fit.before);
    assert.equal(fit.samples, 4800);
    assert.ok(draw(0).floor < 0.02, "no floor where the outcomes have none");
  });
});
