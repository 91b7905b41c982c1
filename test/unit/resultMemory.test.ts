/**
 * The line verifier's result memory (src/engine/twist/resultMemory.ts): what right samples wrote per
 * expression, mined from outcomes, and ℓ's term for agreeing with it — a sum over the result's columns
 * (a column not written yet says nothing), carried by the verifier and its twist file.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mineResultMemory } from "../../src/engine/train/lineLabels";
import { encodeLine } from "../../src/engine/twist/arithmeticLines";
import { LineVerifier } from "../../src/engine/twist/lineVerifier";
import { encodePartial } from "../../src/engine/twist/partialResults";
import { ResultMemory } from "../../src/engine/twist/resultMemory";
import { loadTwist, saveTwist, TwistFileError } from "../../src/engine/twist/twistFile";
import { Rng } from "../../src/engine/util/rng";

const line = (text: string) => {
  const m = /^(\d+) ([-+*/]) (\d+) = (\d+)$/.exec(text)!;
  return { a: m[1], op: m[2] as "+" | "-" | "*" | "/", b: m[3], c: m[4] };
};
const enc = (text: string) => encodeLine(line(text), 4);

function randomVerifier(seed: number): LineVerifier {
  const rng = new Rng(seed);
  const v = LineVerifier.init(4, rng, 4, 6, 3);
  for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = rng.normal();
  return v;
}

describe("result memory (what right samples wrote, read by the line verifier)", () => {
  const memory = new ResultMemory(4, [line("12 * 45 = 540"), line("96 / 4 = 24"), line("7 + 8 = 15")], [0.5, 0, 1, 2], [-1, 0, -3, -4]);

  it("counts the result columns that agree and disagree; blank in both, or not written yet, says nothing", () => {
    assert.deepEqual(memory.agreement(enc("12 * 45 = 540")), { hits: 3, misses: 0 });
    assert.deepEqual(memory.agreement(enc("12 * 45 = 560")), { hits: 2, misses: 1 });
    // A digit where the remembered result has none, and none where it has one, disagree too.
    assert.deepEqual(memory.agreement(enc("12 * 45 = 5400")), { hits: 1, misses: 3 }); // units 0 agree
    assert.deepEqual(memory.agreement(enc("12 * 45 = 54")), { hits: 0, misses: 3 });
    assert.equal(memory.agreement(enc("12 * 46 = 552")), undefined, "another expression");
    assert.equal(memory.agreement(enc("45 * 12 = 540")), undefined, "operands in the other order are another expression");
    // A partial result: "5" written, read as the leading digit of 3 digits (two columns pending) or of 4.
    const partial = (c: string, length: number) => encodePartial({ line: { ...line("12 * 45 = 1"), c }, length }, 4)!;
    assert.deepEqual(memory.agreement(partial("5", 3)), { hits: 1, misses: 0 });
    assert.deepEqual(memory.agreement(partial("5", 4)), { hits: 0, misses: 1 }); // a fourth column the result has not
    assert.deepEqual(memory.agreement(partial("54", 3)), { hits: 2, misses: 0 });
  });

  it("adds hit and miss of the line's operator per column to the verifier's logit, and nothing to a line it does not hold", () => {
    const v = randomVerifier(1);
    const withMemory = v.withMemory(memory);
    const diff = (t: string) => withMemory.lineLogit(enc(t)) - v.lineLogit(enc(t));
    assert.ok(Math.abs(diff("12 * 45 = 540") - 3) < 1e-9);
    assert.ok(Math.abs(diff("12 * 45 = 560") - (2 - 3)) < 1e-9);
    assert.ok(Math.abs(diff("96 / 4 = 24") - 4) < 1e-9);
    assert.ok(Math.abs(diff("96 / 4 = 23") - (2 - 4)) < 1e-9);
    assert.ok(Math.abs(diff("7 + 8 = 15") - 1) < 1e-9);
    assert.equal(diff("12 * 46 = 552"), 0);
    // The memory is no parameter: the copy shares it, withMemory(undefined) drops it, the input keeps its own.
    assert.equal(withMemory.copy().p.memory, memory);
    assert.equal(withMemory.withMemory(undefined).p.memory, undefined);
    assert.equal(v.p.memory, undefined);
    assert.deepEqual(withMemory.parameters(), v.parameters());
  });

  it("leaves out lines wider than its columns, and refuses an expression remembered twice", () => {
    const m = new ResultMemory(4, [line("123 * 45 = 5535"), line("1234 * 45 = 55530")]);
    assert.equal(m.size, 1);
    assert.deepEqual(m.lines, [line("123 * 45 = 5535")]);
    assert.throws(() => new ResultMemory(4, [line("2 * 3 = 6"), line("2 * 3 = 5")]), /remembered twice/);
    assert.throws(() => new ResultMemory(4, [], [0, 0], [0, 0]), /4 finite values/);
  });

  it("is mined from outcomes: right samples' results, across problems, an expression they disagree on dropped", () => {
    const m = mineResultMemory(
      [
        // A right sample writes 6 × 7 = 42; the wrong one's 6 × 7 = 41 is not remembered.
        { texts: ["6 * 7 = 42\n42 + 1 = 43\n#### 43", "6 * 7 = 41\n41 + 1 = 42\n#### 42"], correct: [true, false] },
        // Another problem's right sample agrees on 6 × 7; two problems disagree on 9 × 9 (one slipped twice).
        { texts: ["6 * 7 = 42\n9 * 9 = 81\n#### 81"], correct: [true] },
        { texts: ["9 * 9 = 82\n#### 82"], correct: [true] },
        // A problem without a right sample says nothing.
        { texts: ["5 * 5 = 24\n#### 24"], correct: [false] },
      ],
      4,
    );
    assert.deepEqual(m.lines.map((l) => `${l.a}${l.op}${l.b}=${l.c}`).sort(), ["42+1=43", "6*7=42"]);
    assert.deepEqual([...m.hit, ...m.miss], [0, 0, 0, 0, 0, 0, 0, 0], "weights are set by calibration");
  });

  it("a twist file carries it, and a malformed one is one line that names the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "tsmc-memory-"));
    const path = join(dir, "twist.json");
    const v = randomVerifier(2).withMemory(memory);
    saveTwist(path, v, { baseModel: { name: "m", fingerprint: "f" }, created: "now" });
    const read = loadTwist(path).head as LineVerifier;
    assert.deepEqual(read.p.memory?.toDocument(), memory.toDocument());
    // Version 2, so that a release that cannot read the memory refuses the file rather than read it without.
    const withMemory = JSON.parse(readFileSync(path, "utf8"));
    assert.equal(withMemory.version, 2);
    writeFileSync(path, JSON.stringify({ ...withMemory, version: 4 }));
    assert.throws(
      () => loadTwist(path),
      (e: Error) =>
        e instanceof TwistFileError && /version 4 is not supported \(a later release/.test(e.message) && !e.message.includes("\n"),
    );
    for (const t of ["12 * 45 = 540", "12 * 45 = 541", "96 / 4 = 24", "3 - 1 = 2"])
      assert.ok(Math.abs(read.lineLogit(enc(t)) - v.lineLogit(enc(t))) < 1e-5, t);
    // A file without a memory (every file written before it) reads as before.
    saveTwist(path, randomVerifier(2), { baseModel: { name: "m", fingerprint: "f" }, created: "now" });
    assert.equal((loadTwist(path).head as LineVerifier).p.memory, undefined);
    const doc = JSON.parse(readFileSync(path, "utf8"));
    assert.equal(doc.version, 1);
    for (const [memoryDoc, message] of [
      [{ lines: ["12*45=540", "12 x 45"], hit: [0, 0, 0, 0], miss: [0, 0, 0, 0] }, /line "12 x 45" is not "a op b=c"/],
      [{ lines: [], hit: [0, 0, 0, "x"], miss: [0, 0, 0, 0] }, /4 finite values/],
      [{ lines: ["1+1=2"] }, /needs lines, hit and miss/],
    ] as const) {
      writeFileSync(path, JSON.stringify({ ...doc, params: { ...doc.params, memory: memoryDoc } }));
      assert.throws(
        () => loadTwist(path),
        (e: Error) => e instanceof TwistFileError && e.message.startsWith(path) && message.test(e.message) && !e.message.includes("\n"),
      );
    }
  });
});
