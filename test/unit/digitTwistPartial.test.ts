/**
 * The partial-result head (src/engine/twist/partialResults.ts, trained by
 * src/engine/train/partialResults.ts): cut lines labelled by outcomes, a head that learns from them
 * deterministically, a digit twist that reads it while a result is written and the line verifier at
 * every line end, and a file that holds it. (The exact-Z tests with a head are in digitTwist.test.ts.)
 */
import assert from "node:assert/strict";
import { copyFileSync, cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { TextTokenizer } from "../../src/engine/lm/model/tokenizer";
import { synthesize } from "../../src/engine/math/problems";
import { finishedLineExamples } from "../../src/engine/train/lineContrasts";
import { CutLine, distilledCuts, refitVerifier, trainPartialHead } from "../../src/engine/train/partialResults";
import { arithmeticLines, BLANK, encodeLine } from "../../src/engine/twist/arithmeticLines";
import { DigitTwist } from "../../src/engine/twist/digitTwist";
import { loadDigitTwist, saveDigitTwist } from "../../src/engine/twist/digitTwistFile";
import { logSigmoid } from "../../src/engine/twist/heads";
import { LineVerifier } from "../../src/engine/twist/lineVerifier";
import { encodePartial, PartialResultHead, PENDING } from "../../src/engine/twist/partialResults";
import { ResultLengthTable } from "../../src/engine/twist/resultLengths";
import { loadTwist } from "../../src/engine/twist/twistFile";
import { Rng } from "../../src/engine/util/rng";
import { MODEL_DIR } from "./helpers";
import { evalWithTokenTwist, solveJson } from "./evalCli";

function randomNet(columns: number, seed: number): LineVerifier {
  const rng = new Rng(seed);
  const v = LineVerifier.init(columns, rng, 4, 6);
  for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = rng.normal();
  return v;
}

/**
 * A trained line verifier that reads 2 digits from the column below (the one shipped on 2026-12-05), so
 * that it reads a result being written on its own too (the shipped one now needs its partial-result head).
 */
const OPEN_VERIFIER = join(__dirname, "../fixtures/line-verifier-2digit.json");
const openVerifier = () => loadTwist(OPEN_VERIFIER).head as LineVerifier;

describe("partial-result head (the digit twist's reading of a result being written)", () => {
  it("encodes the written digits where a result of the given length has them, the columns below pending", () => {
    const line = { a: "12", op: "+", b: "95", c: "10" } as const;
    const enc = encodePartial({ line, length: 3 }, 4)!;
    // c's columns, units first: pending, 0, 1, blank.
    assert.deepEqual([...enc.slice(9)], [PENDING, 0, 1, BLANK]);
    assert.deepEqual([...enc.slice(0, 9)], [...encodeLine(line, 4).slice(0, 9)]);
    // Written in full, it is the finished line's encoding.
    assert.deepEqual(encodePartial({ line, length: 2 }, 4), encodeLine(line, 4));
    assert.equal(encodePartial({ line, length: 5 }, 4), undefined);
    assert.equal(encodePartial({ line, length: 1 }, 4), undefined);
    assert.equal(encodePartial({ line: { ...line, a: "12345" }, length: 3 }, 4), undefined);
  });

  it("finished lines for a verifier: the labelled lines, and the mined result with one digit changed as wrong", () => {
    const texts = ["12 + 30 = 42\n#### 42", "12 + 30 = 47\n#### 47", "5 * 6 = 31\n#### 31"];
    const ex = finishedLineExamples(texts, [true, false, false], 1);
    assert.deepEqual(
      ex.slice(0, 2).map((x) => [x.line.c, x.length, x.label, x.weight]),
      [
        ["42", 2, 1, 1],
        ["47", 2, 0, 1],
      ],
    );
    const contrasts = ex.slice(2);
    // "42": 8 other leading digits (no leading zero), 9 other units.
    assert.equal(contrasts.length, 17);
    assert.ok(contrasts.every((x) => x.label === 0 && x.line.a === "12" && x.line.c !== "42" && x.length === 2));
    assert.ok(Math.abs(contrasts.reduce((a, x) => a + x.weight, 0) - 1) < 1e-12);
    assert.ok(
      contrasts.some((x) => x.line.c === "52") && contrasts.some((x) => x.line.c === "40") && !contrasts.some((x) => x.line.c === "02"),
    );
    assert.equal(finishedLineExamples(texts, [true, false, false], 0).length, 2);
  });

  // Cut lines of worked solutions, labelled by the reference (the test knows the arithmetic): every cut
  // of a right result is right; a result with one digit slipped is right up to the slip.
  function workedCuts(n: number, seed: number): CutLine[] {
    const rng = new Rng(seed);
    return synthesize("train", n, seed).flatMap((p) =>
      arithmeticLines(p.answer).flatMap((l) => {
        const at = rng.int(0, l.c.length - 1);
        const slipped = l.c.slice(0, at) + ((Number(l.c[at]) + 1 + rng.int(0, 8)) % 10) + l.c.slice(at + 1);
        return [l.c, slipped].flatMap((c) =>
          Array.from({ length: c.length }, (_, k) => {
            const written = c.slice(0, k + 1);
            return { line: { ...l, c: written }, length: c.length, label: l.c.startsWith(written) ? 1 : 0, weight: 1 };
          }),
        );
      }),
    );
  }

  it("distils the verifier: every line's cuts before its last digit, labelled with φ of the finished line", async () => {
    const verifier = openVerifier();
    const texts = ["12 * 31 = 372\n372 + 5 = 377\nThe answer is 377", "12 * 31 = 382\n4 + 4 = 8\n12345 + 1 = 12346"];
    const cuts = distilledCuts(texts, verifier);
    const phi = (l: { a: string; op: string; b: string; c: string }) =>
      Math.exp(logSigmoid(verifier.lineLogit(encodeLine(l as Parameters<typeof encodeLine>[0], 4))));
    // One-digit results have no cut before their last digit; 12345 does not fit the 4 columns.
    assert.deepEqual(
      cuts.map((c) => [c.line.c, c.length, c.weight]),
      [
        ["3", 3, 1],
        ["37", 3, 1],
        ["3", 3, 1],
        ["37", 3, 1],
        ["3", 3, 1],
        ["38", 3, 1],
      ],
    );
    const lines = [...arithmeticLines(texts[0]), ...arithmeticLines(texts[1])];
    const expected = [lines[0], lines[0], lines[1], lines[1], lines[2], lines[2]].map(phi);
    assert.deepEqual(
      cuts.map((c) => c.label),
      expected,
    );
    assert.ok(expected[0] !== expected[4], "a slip changes φ");
    // Trained on them from the verifier, the head's value at a cut moves toward the mean φ of the lines through it.
    const head = PartialResultHead.fromVerifier(verifier);
    const at = (c: string) => Math.exp(logSigmoid(head.logit({ line: { ...lines[0], c }, length: 3 })!));
    const target = (expected[0] + expected[4]) / 2;
    const before = Math.abs(at("3") - target);
    await trainPartialHead(head, cuts, { epochs: 200, batch: 6, learningRate: 0.01, seed: 1 });
    assert.ok(Math.abs(at("3") - target) < Math.min(0.05, before), `${at("3")} against ${target} (from ${before} away)`);
  });

  it("learns from the cut lines, the same way for the same seed", async () => {
    const cuts = workedCuts(120, 3).filter((c) => encodePartial(c, 4));
    const loss = (head: PartialResultHead) =>
      cuts.reduce((s, c) => {
        const z = head.logit(c)!;
        return s - c.weight * (c.label ? logSigmoid(z) : logSigmoid(-z));
      }, 0);
    const heads = [0, 1].map(() => new PartialResultHead(LineVerifier.init(4, new Rng("partial-test"))));
    const before = loss(heads[0]);
    for (const h of heads) await trainPartialHead(h, cuts, { epochs: 3, batch: 64, learningRate: 0.01, seed: 5 });
    assert.ok(loss(heads[0]) < 0.5 * before, `loss ${before} → ${loss(heads[0])}`);
    assert.deepEqual(heads[1].net.parameters(), heads[0].net.parameters());
    // Held out: the right digit of a result being written outranks a slip of it more often than not.
    let wins = 0,
      n = 0;
    for (const p of synthesize("test", 40, 4))
      for (const l of arithmeticLines(p.answer))
        for (let k = 1; k < l.c.length; k++) {
          const right = heads[0].logit({ line: { ...l, c: l.c.slice(0, k) }, length: l.c.length })!;
          const slip = heads[0].logit({ line: { ...l, c: l.c.slice(0, k - 1) + ((Number(l.c[k - 1]) + 1) % 10) }, length: l.c.length })!;
          wins += +(right > slip);
          n++;
        }
    assert.ok(n >= 40 && wins / n > 0.6, `right digit first in ${wins} of ${n}`);
  });

  it("refits a verifier on its own objective: a copy, nearer its mined lines and contrasts, the same for the same seed", async () => {
    // Right and wrong samples of the same problems, as outcomes label them (the worked solutions, and the
    // same solutions with a result's digit changed, wrong).
    const samples = synthesize("train", 60, 8).map((p) => {
      const slipped = p.answer.replace(/= (\d)/, (_, d: string) => `= ${(Number(d) + 1) % 10}`);
      return { texts: [p.answer, slipped, p.answer], correct: [true, false, true] };
    });
    const lines = samples.flatMap((s) => finishedLineExamples(s.texts, s.correct, 1));
    const loss = (v: LineVerifier) =>
      lines.reduce((sum, l) => {
        const z = v.lineLogit(encodeLine(l.line, 4));
        return sum - l.weight * (l.label ? logSigmoid(z) : logSigmoid(-z));
      }, 0);
    const start = randomNet(4, 21);
    const before = start.parameters().map((p) => Float32Array.from(p));
    const o = { seed: 3, maxTokens: 96, contrastWeight: 1, heldOut: [] };
    const [a, b] = [await refitVerifier(start, samples, o), await refitVerifier(start, samples, o)];
    assert.ok(a && b && a !== start);
    assert.deepEqual(start.parameters(), before, "the verifier given is left as it was");
    assert.deepEqual(a.parameters(), b.parameters());
    assert.ok(loss(a) < loss(start), `loss ${loss(start)} → ${loss(a)}`);
    // Samples without a line it reads leave the verifier as it is.
    assert.equal(await refitVerifier(start, [{ texts: ["#### 4"], correct: [true] }], o), start);
  });

  it("in the digit twist: a result being written is the head's mixture over lengths; finished lines are the verifier's", () => {
    const verifier = openVerifier();
    const head = new PartialResultHead(randomNet(4, 11));
    const table = new ResultLengthTable();
    for (const p of synthesize("train", 100, 1)) for (const l of arithmeticLines(p.answer)) table.add(l);
    const twist = new DigitTwist(verifier, 1, table, head);
    for (const c of ["4", "42", "420", "1"]) {
      const line = { a: "12", op: "+", b: "30", c } as const;
      const w = table.weights(line, 4);
      let mass = 0,
        total = 0;
      for (let L = c.length; L <= 4; L++) {
        const z = L === c.length ? verifier.lineLogit(encodeLine(line, 4)) : head.logit({ line, length: L })!;
        mass += w[L - 1] / (1 + Math.exp(-z));
        total += w[L - 1];
      }
      assert.ok(Math.abs(twist.openResultValue(line) - Math.log(mass / total)) < 1e-9, c);
      assert.notEqual(twist.openResultValue(line), new DigitTwist(verifier, 1, table).openResultValue(line));
    }
    assert.throws(() => new DigitTwist(verifier, 1, table, new PartialResultHead(randomNet(3, 1))), /different columns/);

    // Token by token on worked solutions: after "\n" and at EOS ψ is the verifier's; a digit's ψ is the
    // text read after it, and the same on a second reading (a function of the prefix).
    const tok = TextTokenizer.fromFolder(openModelFolder(MODEL_DIR));
    const V = 332;
    const tokenTwist = new DigitTwist(verifier, V, table, head);
    const decode = (x: readonly number[]) => tok.decode(x);
    const eos = [...Array(V).keys()].filter((s) => tok.isEos(s));
    let lineEnds = 0;
    for (const p of synthesize("test", 15, 3)) {
      const ids = tok.encode(p.answer);
      for (let t = 0; t < ids.length; t++) {
        const prefix = ids.slice(0, t);
        const row = tokenTwist.logPsiNext({ hiddenSize: 0, prefixes: [prefix], decode });
        const again = new DigitTwist(verifier, V, table, head).logPsiNext({ hiddenSize: 0, prefixes: [prefix], decode });
        assert.deepEqual(again, row);
        const next = ids[t];
        const after = tok.decode([...prefix, next]);
        if (tok.isLineEnd(next)) {
          assert.ok(Math.abs(row[next] - verifier.logValueOfText(after)) < 1e-6, after);
          lineEnds++;
        }
        if (/\d/.test(tok.decode([next]))) assert.ok(Math.abs(row[next] - twist.logValueOfText(after)) < 1e-6, after);
        for (const e of eos) assert.ok(Math.abs(row[e] - verifier.logValueOfText(tok.decode(prefix))) < 1e-6);
      }
    }
    assert.ok(lineEnds >= 15);
  });

  it("gives every digit token, inside a result, the value of the text read after it (the shipped twist, all ten digits, two notations)", () => {
    const folder = openModelFolder(MODEL_DIR);
    const tok = TextTokenizer.fromFolder(folder);
    const V = 332;
    const twist = loadDigitTwist(join(MODEL_DIR, "twist-token.json"), V, folder)!;
    // Read afresh, text by text: nothing the first twist computed is in its caches.
    const reference = loadDigitTwist(join(MODEL_DIR, "twist-token.json"), V, folder)!;
    const decode = (x: readonly number[]) => tok.decode(x);
    const digitTokens = [...Array(V).keys()].filter((s) => /\d/.test(decode([s])));
    // Solutions as the shipped model writes them, and the same lines spelled otherwise (× for *, two spaces after =).
    const texts = synthesize("test", 12, 5).flatMap((p) => [p.answer, p.answer.replace(/ \* /g, " × ").replace(/ = /g, " =  ")]);
    let positions = 0,
      compared = 0;
    for (const text of texts) {
      const ids = tok.encode(text);
      for (let t = 0; t < ids.length; t++) {
        const prefix = ids.slice(0, t);
        const before = decode(prefix);
        if (!/= ?\d+$/.test(before)) continue;
        positions++;
        const row = twist.logPsiNext({ hiddenSize: 0, prefixes: [prefix], decode });
        for (const s of digitTokens) {
          // The same value to the bit (the row holds float32).
          assert.equal(row[s], Math.fround(reference.logValueOfText(before + decode([s]))), `${JSON.stringify(before)} + ${decode([s])}`);
          compared++;
        }
      }
    }
    assert.ok(positions >= 60 && compared >= 1000, `${positions} positions, ${compared} digits compared`);
  });

  it("a digit-twist file holds the head (version 2) and reads back the same twist", () => {
    const folder = openModelFolder(MODEL_DIR);
    const dir = mkdtempSync(join(tmpdir(), "tsmc-partial-file-"));
    const path = join(dir, "digit-twist.json");
    const table = new ResultLengthTable();
    for (const p of synthesize("train", 50, 1)) for (const l of arithmeticLines(p.answer)) table.add(l);
    const head = PartialResultHead.fromVerifier(openVerifier());
    head.net.p.T[17] += 0.5; // not the verifier's parameters any more
    saveDigitTwist(path, OPEN_VERIFIER, table, { test: true }, head);
    const loaded = loadDigitTwist(path, 332, folder)!;
    assert.ok(loaded.partial);
    assert.deepEqual(loaded.partial.net.parameters(), head.net.parameters());
    const twist = new DigitTwist(openVerifier(), 332, table, head);
    for (const c of ["4", "42", "7"]) {
      const line = { a: "12", op: "*", b: "30", c } as const;
      assert.equal(loaded.openResultValue(line), twist.openResultValue(line));
    }
    const doc = JSON.parse(readFileSync(path, "utf8"));
    assert.equal(doc.version, 2);
    // Without a head the file stays version 1; a head for another model is refused.
    saveDigitTwist(join(dir, "plain.json"), OPEN_VERIFIER, table);
    assert.equal(JSON.parse(readFileSync(join(dir, "plain.json"), "utf8")).version, 1);
    assert.equal(loadDigitTwist(join(dir, "plain.json"), 332, folder)?.partial, undefined);
    doc.partial.baseModel.fingerprint = "0".repeat(32);
    writeFileSync(join(dir, "foreign.json"), JSON.stringify(doc));
    assert.throws(() => loadDigitTwist(join(dir, "foreign.json"), 332, folder), /was trained for model/);
    delete doc.partial;
    writeFileSync(join(dir, "headless.json"), JSON.stringify(doc));
    assert.throws(() => loadDigitTwist(join(dir, "headless.json"), 332), /no partial-result head/);
  });

  /** A digit-twist file in `dir`: the 2-digit trained verifier, a head made from it, lengths counted from reference solutions. */
  function writeDigitTwistWithHead(dir: string): string {
    const file = join(dir, "digit-twist.json");
    const table = new ResultLengthTable();
    for (const p of synthesize("train", 50, 1)) for (const l of arithmeticLines(p.answer)) table.add(l);
    saveDigitTwist(file, OPEN_VERIFIER, table, {}, PartialResultHead.fromVerifier(openVerifier()));
    return file;
  }

  it("solve --level token steers with a digit-twist file given or beside the model as twist-token.json (or a line verifier read digit by digit)", function () {
    this.timeout(300000);
    const dir = mkdtempSync(join(tmpdir(), "tsmc-partial-solve-"));
    const file = writeDigitTwistWithHead(dir);
    const problem = synthesize("test", 1, 9)[0].question;
    for (const twist of [file, OPEN_VERIFIER]) {
      const r = solveJson(problem, ["--level", "token", "--twist", twist, "--particles", "4", "--threads", "1"]);
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.deepEqual([out.level, out.twist, out.particles.length], ["token", twist, 4]);
    }
    // Beside a model as its twist-token.json, the default at token level.
    const folder = join(dir, "model");
    cpSync(MODEL_DIR, folder, { recursive: true, filter: (src) => !src.includes(".smc.") });
    copyFileSync(file, join(folder, "twist-token.json"));
    const byDefault = solveJson(problem, ["--level", "token", "--model", folder, "--particles", "4", "--threads", "1"]);
    assert.equal(byDefault.status, 0, byDefault.stderr);
    assert.equal(JSON.parse(byDefault.stdout).twist, join(folder, "twist-token.json"));
    // A file that is neither is refused as before, in one line.
    const bad = solveJson(problem, ["--level", "token", "--twist", join(dir, "missing.json")]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr.trim(), /^twisted-smc: .*missing\.json does not exist/);
    assert.equal(bad.stderr.trim().split("\n").length, 1);
  });

  it("eval --token-twist reads a digit-twist file with a head", function () {
    this.timeout(300000);
    const dir = mkdtempSync(join(tmpdir(), "tsmc-partial-eval-"));
    const file = writeDigitTwistWithHead(dir);
    const r = evalWithTokenTwist(file);
    assert.equal(r.status, 0, r.stderr);
    const row = JSON.parse(r.stdout).rows.find((x: { method: string }) => x.method === "twisted SMC, token level (posterior sample)");
    assert.ok(row.note === undefined && row.accuracy >= 0 && row.accuracy <= 1 && row.seconds > 0, JSON.stringify(row));
  });
});
