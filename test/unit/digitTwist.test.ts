/**
 * The digit twist (src/engine/twist/digitTwist.ts): the line verifier read at token level. It must
 * agree with the line verifier wherever a line is finished, read a result being written as the best
 * completion the verifier sees, steer the shipped model's digits with the shipped verifier, and keep
 * token-level SMC exact on the enumerable toy model.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { TextTokenizer } from "../../src/engine/lm/model/tokenizer";
import { runTwistedSmc } from "../../src/engine/smc/twistedSmc";
import { train } from "../../src/engine/train/trainer";
import { applyOp, synthesize } from "../../src/engine/math/problems";
import { arithmeticLines, encodeLine } from "../../src/engine/twist/arithmeticLines";
import { DigitTwist } from "../../src/engine/twist/digitTwist";
import { PartialResultHead } from "../../src/engine/twist/partialResults";
import { ResultLengthTable } from "../../src/engine/twist/resultLengths";
import { ResultMemory } from "../../src/engine/twist/resultMemory";
import { loadDigitTwist, parseDigitTwistDocument, saveDigitTwist } from "../../src/engine/twist/digitTwistFile";
import { countResultLengths } from "../../src/engine/train/partialResults";
import { plainSamplesFor } from "../../src/engine/train/samples";
import { loadProblems } from "../../src/engine/train/data";
import { MathProblem } from "../../src/engine/math/dataset";
import { logSigmoid } from "../../src/engine/twist/heads";
import { LineVerifier } from "../../src/engine/twist/lineVerifier";
import { loadTwist, modelFingerprint, readTwistDocument, saveTwist } from "../../src/engine/twist/twistFile";
import { Rng } from "../../src/engine/util/rng";
import type { TokenTwist } from "../../src/engine/smc/twist";
import { MODEL_DIR, shippedModel, tinyTrainConfig } from "./helpers";
import { enumerateToy, exactTwist, TOY_EOS, TOY_MAX_TOKENS, TOY_PROMPT, ToyModel } from "./toyModel";
import { logPhi, toyOptions } from "./toyStatistics";
import { evalWithTokenTwist } from "./evalCli";
import { knownAnswerTwist, unknownAnswerPotential } from "../../src/engine/twist/finalPotential";
import { KnownAnswerDigitTwist, KnownAnswerLineTwist } from "../../src/engine/twist/knownAnswer";

/** A line verifier with every parameter random, so that lines and columns score differently. */
function randomVerifier(columns: number, seed: number, below: 2 | 3 = 2): LineVerifier {
  const rng = new Rng(seed);
  const v = LineVerifier.init(columns, rng, 4, 6, below);
  for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = rng.normal();
  return v;
}

/**
 * A trained line verifier that reads 2 digits from the column below (the one shipped on 2026-12-05), so
 * that it reads a result being written on its own too (the shipped one now needs its partial-result head).
 */
const OPEN_VERIFIER = join(__dirname, "../fixtures/line-verifier-2digit.json");

/** Result lengths counted from the right lines of the model's plain samples, as fitPartialHead counts them. */
async function resultLengthsOf(model: Awaited<ReturnType<typeof shippedModel>>, problems: readonly MathProblem[], samples: number) {
  const table = new ResultLengthTable();
  let lines = 0;
  for (const [i, problem] of problems.entries()) {
    const plain = await plainSamplesFor(model, problem, i, { samples, maxTokens: 96, seed: 1 }, "lengths");
    lines += countResultLengths(table, plain.texts, plain.correct);
  }
  return { table, lines };
}

function openVerifier(): LineVerifier {
  const { head } = loadTwist(OPEN_VERIFIER);
  assert.ok(head instanceof LineVerifier);
  return head;
}

describe("digit twist (the line verifier at token level)", () => {
  for (const withMemory of [false, true])
    it(`reads a result being written as its best completion up to the verifier's columns${withMemory ? ", with a result memory" : ""}`, () => {
      // The memory's term is a sum over the result's columns too, so the best completion stays column by column.
      const memory = new ResultMemory(
        3,
        [
          { a: "7", op: "*", b: "8", c: "56" },
          { a: "905", op: "-", b: "6", c: "899" },
        ],
        [1.5, 2, 2.5, 0],
        [-2, -3, -1, 0],
      );
      const v = withMemory ? randomVerifier(3, 1).withMemory(memory) : randomVerifier(3, 1);
      const twist = new DigitTwist(v, 1);
      for (const [a, op, b] of [
        ["12", "+", "30"],
        ["7", "*", "8"],
        ["905", "-", "6"],
        ["81", "/", "9"],
      ] as const) {
        for (const c of ["4", "42", "420", "9", "0", "07", "999"]) {
          let best = -Infinity;
          // Every completion of c up to 3 digits (c itself included), by brute force.
          const completions = [c];
          for (let i = 0; i < completions.length; i++)
            if (completions[i].length < 3) for (let d = 0; d < 10; d++) completions.push(completions[i] + d);
          for (const candidate of completions) best = Math.max(best, v.lineLogit(encodeLine({ a, op, b, c: candidate }, 3)));
          const got = twist.openResultValue({ a, op, b, c });
          assert.ok(Math.abs(got - logSigmoid(best)) < 1e-9, `${a} ${op} ${b} = ${c}…: ${got} vs ${logSigmoid(best)}`);
        }
        // A result longer than the columns is not read, as the verifier does not read it.
        assert.equal(twist.openResultValue({ a, op, b, c: "1234" }), 0);
        assert.equal(v.encodeLine({ a, op, b, c: "1234" }), undefined);
      }
    });

  it("with a length model, weighs each length's best completion by how often right results have that length", () => {
    const v = randomVerifier(3, 2);
    const table = new ResultLengthTable();
    // Right lines of samples: 2-digit results of "12 + 30" style lines, some 3-digit ones.
    for (let i = 0; i < 30; i++) table.add({ a: "12", op: "+", b: "30", c: "42" });
    for (let i = 0; i < 10; i++) table.add({ a: "19", op: "+", b: "90", c: "109" });
    const w = table.weights({ a: "12", op: "+", b: "30", c: "" }, 3);
    assert.ok(w[1] > 10 * w[2] && w[1] > 10 * w[0] && w[0] > 0, `weights ${w}`);
    // Unseen leading digits back off to (operator, operand lengths); an unseen operator is uniform.
    const back = table.weights({ a: "55", op: "+", b: "66", c: "" }, 3);
    assert.ok(back[1] > back[2] && back[2] > back[0], `backed off ${back}`);
    const flat = table.weights({ a: "5", op: "*", b: "6", c: "" }, 3);
    assert.ok(flat.every((x) => Math.abs(x - flat[0]) < 1e-12));
    assert.deepEqual(ResultLengthTable.fromJSON(JSON.parse(JSON.stringify(table))).weights({ a: "12", op: "+", b: "30", c: "" }, 3), w);
    assert.throws(() => ResultLengthTable.fromJSON({ fine: { x: [1] }, coarse: {} }), /not a table/);

    const twist = new DigitTwist(v, 1, table);
    for (const c of ["4", "42", "1", "10", "109"]) {
      const line = { a: "12", op: "+", b: "30", c } as const;
      const weights = table.weights(line, 3);
      let mass = 0,
        total = 0;
      for (let length = c.length; length <= 3; length++) {
        let best = -Infinity;
        const completions = [c];
        for (let i = 0; i < completions.length; i++)
          if (completions[i].length < length) for (let d = 0; d < 10; d++) completions.push(completions[i] + d);
        for (const x of completions.filter((x) => x.length === length))
          best = Math.max(best, v.lineLogit(encodeLine({ ...line, c: x }, 3)));
        mass += weights[length - 1] * Math.exp(logSigmoid(best));
        total += weights[length - 1];
      }
      assert.ok(Math.abs(twist.openResultValue(line) - Math.log(mass / total)) < 1e-9, c);
    }
    // A finished line reads as the verifier reads it, length model or not.
    assert.ok(Math.abs(twist.logValueOfText("12 + 30 = 42\n") - v.logValueOfText("12 + 30 = 42\n")) < 1e-12);
  });

  it("agrees with the line verifier after every line and at EOS, and its rows are the text read after each token", () => {
    const folder = openModelFolder(MODEL_DIR);
    const tok = TextTokenizer.fromFolder(folder);
    const V = 332;
    const v = openVerifier();
    const twist = new DigitTwist(v, V);
    // A second twist reads each text afresh (its caches hold nothing the first one computed).
    const reference = new DigitTwist(v, V);
    const eos = [...Array(V).keys()].filter((s) => tok.isEos(s));
    assert.ok(eos.length >= 1);
    let lineEnds = 0,
      digits = 0;
    for (const p of synthesize("test", 40, 3)) {
      const ids = tok.encode(p.answer);
      for (let t = 0; t < ids.length; t++) {
        const prefix = ids.slice(0, t);
        const row = twist.logPsiNext({ hiddenSize: 0, prefixes: [prefix], decode: (x) => tok.decode(x) });
        const next = ids[t];
        const after = tok.decode([...prefix, next]);
        if (tok.isLineEnd(next)) {
          assert.ok(Math.abs(row[next] - v.logValueOfText(after)) < 1e-6, `after "${after}"`);
          lineEnds++;
        }
        if (/\d/.test(tok.decode([next]))) {
          assert.ok(Math.abs(row[next] - reference.logValueOfText(after)) < 1e-6, `after "${after}"`);
          digits++;
        }
        for (const e of eos) assert.ok(Math.abs(row[e] - v.logValueOfText(tok.decode(prefix))) < 1e-6, `EOS after "${after}"`);
      }
    }
    assert.ok(lineEnds >= 40 && digits >= 200, `${lineEnds} line ends, ${digits} digits`);
  });

  it("with a trained verifier (2 digits below, read open) and a length model, ranks the right units digit of a result first most of the time", () => {
    const tok = TextTokenizer.fromFolder(openModelFolder(MODEL_DIR));
    const V = 332;
    const verifier = openVerifier();
    // The lengths of right results, counted here from worked solutions (the engine counts its samples').
    const table = new ResultLengthTable();
    for (const p of synthesize("train", 300, 1)) for (const l of arithmeticLines(p.answer)) table.add(l);
    const decode = (x: readonly number[]) => tok.decode(x);
    const firstAtUnits = (twist: DigitTwist) => {
      let positions = 0,
        firsts = 0;
      for (const p of synthesize("test", 60, 5)) {
        for (const line of p.answer.split("\n").filter((l) => l.includes("="))) {
          const [lhs, c] = line.split("= ");
          const prefix = tok.encode(c.length === 1 ? `${lhs}=` : `${lhs}= ${c.slice(0, -1)}`);
          const row = twist.logPsiNext({ hiddenSize: 0, prefixes: [prefix], decode });
          const scores = Array.from({ length: 10 }, (_, d) => row[tok.encode(`${c.length === 1 ? " " : ""}${d}`)[0]]);
          const right = Number(c[c.length - 1]);
          positions++;
          if (scores.every((x, d) => d === right || x < scores[right])) firsts++;
        }
      }
      return firsts / positions;
    };
    // Measured: 0.68 with the lengths, 0.47 without (every completion up to 4 digits): docs/token-twist.md.
    const withLengths = firstAtUnits(new DigitTwist(verifier, V, table));
    const without = firstAtUnits(new DigitTwist(verifier, V));
    assert.ok(withLengths > 0.6 && withLengths > without + 0.1, `right units digit first: ${withLengths} with lengths, ${without} without`);
  });

  describe("on the enumerable toy model (token level, exact weights)", () => {
    // Tokens read as "1", "2" and " + 1 = ": "12 + 1 = 21", "1 + 1 = 2 + 1 = 1", …
    const PIECES = ["1", "2", " + 1 = "];
    const decode = (tokens: readonly number[]) => tokens.map((t) => (t === TOY_EOS ? "" : PIECES[t])).join("");
    const verifier = randomVerifier(2, 7);
    const lm = new ToyModel();
    const meanZ = async (twist: TokenTwist, potential: ((text: string) => number) | undefined, runs: number) => {
      const zs: number[] = [];
      for (let r = 0; r < runs; r++) {
        const run = await runTwistedSmc(
          lm,
          TOY_PROMPT,
          toyOptions({
            twist,
            seed: 2000 + r,
            essThreshold: 0.8,
            logFinalPotential: potential,
            text: { isEos: (t) => t === TOY_EOS, isLineEnd: () => false, decode },
          }),
        );
        zs.push(Math.exp(run.logZ));
      }
      const mean = zs.reduce((a, b) => a + b, 0) / runs;
      const se = Math.sqrt(zs.reduce((a, b) => a + (b - mean) ** 2, 0) / (runs - 1) / runs);
      return { mean, se };
    };

    it("the twist is not constant on the toy's texts (the test below can fail)", () => {
      const values = new Set(enumerateToy().map((s) => new DigitTwist(verifier, 4).logValueOfText(decode(s.tokens)).toFixed(6)));
      assert.ok(values.size >= 5, `${values.size} distinct values`);
      // The memory changes what the verifier says of the toy's lines that it remembers, and only of those.
      const text = (tokens: number[]) => decode(tokens);
      const changed = enumerateToy().filter(
        (s) => Math.abs(verifierM.logValueOfText(text(s.tokens)) - verifier.logValueOfText(text(s.tokens))) > 1e-9,
      );
      assert.ok(changed.length >= 3, `${changed.length} texts read differently with the memory`);
      assert.ok(arithmeticLines(decode([1, 0, 2, 1, 0])).length === 1);
    });

    // A length model that favours 2-digit results of "1 + 1" and "12 + 1" lines.
    const lengths = new ResultLengthTable();
    for (const c of ["2", "13", "13", "21", "21", "21", "211"]) lengths.add({ a: "12", op: "+", b: "1", c });
    // A partial-result head with every parameter random: results being written read by the head. Its
    // parameters are scaled down so that ψ inside a line stays within a few e-folds of the verifier's at
    // the line's end: with the full scale a rare digit's ψ is e⁻²⁰ and Ẑ's tail too heavy for 300 runs.
    const partial = new PartialResultHead(randomVerifier(2, 8));
    for (const p of partial.net.parameters()) p.forEach((x, j) => (p[j] = 0.4 * x));
    // The shipped kind: verifier and head read the result's digit in the column below too.
    const verifier3 = randomVerifier(2, 9, 3);
    const partial3 = new PartialResultHead(randomVerifier(2, 10, 3));
    for (const p of partial3.net.parameters()) p.forEach((x, j) => (p[j] = 0.4 * x));
    // A memory of what right samples wrote (resultMemory.ts), in the verifier and in the head: "2 + 1 = …"
    // can never agree with it (no token writes a 3), "12 + 1 = 13" can.
    const memory = new ResultMemory(
      2,
      [
        { a: "12", op: "+", b: "1", c: "13" },
        { a: "1", op: "+", b: "1", c: "2" },
        { a: "2", op: "+", b: "1", c: "3" },
      ],
      [1, 0, 0, 0],
      [-1.5, 0, 0, 0],
    );
    const verifierM = verifier.withMemory(memory);
    const partialM = new PartialResultHead(partial.net.withMemory(memory));
    for (const [name, verifierOf, make] of [
      ["a result memory, read open", verifierM, () => new DigitTwist(verifierM, 4, lengths)],
      ["a result memory in the verifier and the head", verifierM, () => new DigitTwist(verifierM, 4, lengths, partialM)],
      ["any length", verifier, () => new DigitTwist(verifier, 4)],
      ["learned lengths", verifier, () => new DigitTwist(verifier, 4, lengths)],
      ["a partial-result head", verifier, () => new DigitTwist(verifier, 4, lengths, partial)],
      ["a partial-result head without lengths", verifier, () => new DigitTwist(verifier, 4, undefined, partial)],
      ["a verifier and head reading the result digit below", verifier3, () => new DigitTwist(verifier3, 4, lengths, partial3)],
    ] as const) {
      it(`${name}, with a known final potential: mean Ẑ is within 3 standard errors of the exact Z`, async () => {
        // Z = Σ p(s)·φ(text of s), whatever the twist.
        const exact = exactTwist((toyText) => logPhi(decode([...toyText].map(Number))));
        const { mean, se } = await meanZ(make(), logPhi, 300);
        assert.ok(Math.abs(mean - exact.z) < 3 * se, `mean ${mean} vs Z ${exact.z} (se ${se})`);
      });

      it(`${name}, without one: mean Ẑ is within 3 standard errors of Σ p·ψ(end), ψ at EOS being the line verifier's`, async () => {
        const twist = make();
        let z = 0;
        for (const s of enumerateToy()) {
          const text = decode(s.tokens);
          const cut = s.tokens.length >= TOY_MAX_TOKENS;
          z += Math.exp(s.logP + (cut ? twist.logValueOfText(text) : verifierOf.logValueOfText(text)));
        }
        const { mean, se } = await meanZ(twist, undefined, 300);
        assert.ok(Math.abs(mean - z) < 3 * se, `mean ${mean} vs Z ${z} (se ${se})`);
      });
    }

    it("read for a known answer, with its floor: agrees with the floored verifier at line ends, reads a result at its end, and mean Ẑ is within 3 standard errors of the exact Z", async () => {
      const floored = verifierM.withKnownAnswerFloor(0.2);
      const plain = new DigitTwist(floored, 4, lengths, partialM);
      const twist = plain.forKnownAnswer();
      assert.notEqual(twist, plain);
      assert.equal(twist.forKnownAnswer(), twist, "read so once");
      const unfloored = new DigitTwist(verifierM, 4, lengths, partialM).forKnownAnswer();
      assert.equal(unfloored.verifier, verifierM, "no floor, the same verifier");
      const known = floored.forKnownAnswer();
      let differs = 0,
        open = 0;
      for (const s of enumerateToy()) {
        const text = decode(s.tokens);
        // A result being written is worth 1 until it closes: ψ as before its first digit.
        const trailing = /\d+$/.exec(text)?.[0];
        const lines = arithmeticLines(text);
        if (trailing && lines.length && lines[lines.length - 1].c === trailing) {
          const before = text.slice(0, text.length - trailing.length);
          assert.equal(twist.logValueOfText(text), twist.logValueOfText(before), text);
          if (Math.abs(plain.logValueOfText(text) - plain.logValueOfText(before)) > 0.05) open++;
        }
        for (let cut = text.indexOf("\n"); cut >= 0; cut = text.indexOf("\n", cut + 1)) {
          const lines = text.slice(0, cut + 1);
          assert.ok(Math.abs(twist.logValueOfText(lines) - known.logValueOfText(lines)) < 1e-9, lines);
          assert.ok(Math.abs(plain.logValueOfText(lines) - verifierM.logValueOfText(lines)) < 1e-9, "unfloored when the answer is unknown");
        }
        if (Math.abs(twist.logValueOfText(text) - plain.logValueOfText(text)) > 0.05) differs++;
      }
      assert.ok(
        differs > 0 && open > 0,
        `${differs} texts the floor changes, ${open} results read open when the answer is unknown (the checks can fail)`,
      );
      const exact = exactTwist((toyText) => logPhi(decode([...toyText].map(Number))));
      const { mean, se } = await meanZ(twist, logPhi, 300);
      assert.ok(Math.abs(mean - exact.z) < 3 * se, `mean ${mean} vs Z ${exact.z} (se ${se})`);
    });

    it("reading a known answer: ψ = 1 once a result is the answer, and mean Ẑ is within 3 standard errors of the exact Z at both levels", async () => {
      // "2" is a result "1 + 1 = 2" writes, and the leading digit of "21" and "22". The known answer's
      // potential: 1 for a text whose last number is 2, else a little (positive, so that Ẑ's spread stays
      // within what 300 runs measure).
      const floored = verifierM.withKnownAnswerFloor(0.2);
      const digit = knownAnswerTwist(new DigitTwist(floored, 4, lengths, partialM), 2);
      const line = knownAnswerTwist(floored, 2);
      assert.ok(digit instanceof KnownAnswerDigitTwist && line instanceof KnownAnswerLineTwist);
      const answerPhi = (text: string) => (/(^|\D)2$/.test(text) ? 0 : Math.log(0.05));
      let reached = 0,
        read = 0;
      for (const s of enumerateToy()) {
        const text = decode(s.tokens);
        if (line.logValueOfText(text) === 0 && floored.forKnownAnswer().logValueOfText(text) < 0) reached++;
        const row = digit.logPsiNext({ hiddenSize: 0, prefixes: [s.tokens.slice(0, -1)], decode });
        const unread = new DigitTwist(floored, 4, lengths, partialM)
          .forKnownAnswer()
          .logPsiNext({ hiddenSize: 0, prefixes: [s.tokens.slice(0, -1)], decode });
        if (row.some((x, j) => Math.abs(x - unread[j]) > 0.05)) read++;
      }
      assert.ok(
        reached >= 3 && read >= 10,
        `${reached} texts reach the answer, ${read} prefixes read differently with it (the checks can fail)`,
      );
      const exact = exactTwist((toyText) => answerPhi(decode([...toyText].map(Number))));
      const tokenLevel = await meanZ(digit, answerPhi, 300);
      assert.ok(
        Math.abs(tokenLevel.mean - exact.z) < 3 * tokenLevel.se,
        `token level: mean ${tokenLevel.mean} vs Z ${exact.z} (se ${tokenLevel.se})`,
      );
      const zs: number[] = [];
      for (let r = 0; r < 300; r++) {
        const text = { isEos: (t: number) => t === TOY_EOS, isLineEnd: (t: number) => t === 2, decode };
        const run = await runTwistedSmc(
          lm,
          TOY_PROMPT,
          toyOptions({ level: "step", twist: line, seed: 3000 + r, essThreshold: 0.8, logFinalPotential: answerPhi, text }),
        );
        zs.push(Math.exp(run.logZ));
      }
      const mean = zs.reduce((a, b) => a + b, 0) / zs.length;
      const se = Math.sqrt(zs.reduce((a, b) => a + (b - mean) ** 2, 0) / (zs.length - 1) / zs.length);
      assert.ok(Math.abs(mean - exact.z) < 3 * se, `step level: mean ${mean} vs Z ${exact.z} (se ${se})`);
    });

    it("with a final power, ending on unknownAnswerPotential: mean Ẑ is within 3 standard errors of Σ p·φ^γ", async () => {
      // Lines rated far lower than the random verifier rates them and a power below 1 (any power is read the
      // same way), so that φ^γ and φ differ by more than the runs can miss.
      const lowered = verifierM.copy();
      lowered.p.bias[0] -= 5;
      const powered = lowered.withFinalPower(0.25);
      const twist = new DigitTwist(powered, 4, lengths, partialM);
      const potential = unknownAnswerPotential(twist);
      assert.ok(potential, "a verifier with a final power asks for its own final potential");
      assert.equal(unknownAnswerPotential(new DigitTwist(lowered, 4, lengths, partialM)), undefined);
      // The digit twist's final potential (read from its cache of lines) is the verifier's φ^γ of the text.
      for (const s of enumerateToy()) {
        const text = decode(s.tokens);
        assert.ok(Math.abs(potential(text) - powered.finalLogValue(text)) < 1e-9, text);
      }
      // Every text ends on φ^γ, cut by the budget or not; the twist inside is φ's, as without the power.
      const zOf = (power: number) =>
        enumerateToy().reduce((z, s) => z + Math.exp(s.logP + power * lowered.logValueOfText(decode(s.tokens))), 0);
      const z = zOf(0.25);
      const { mean, se } = await meanZ(twist, potential, 300);
      assert.ok(Math.abs(mean - z) < 3 * se, `mean ${mean} vs Z ${z} (se ${se})`);
      assert.ok(Math.abs(zOf(1) - z) > 0.01, `Σ p·φ ${zOf(1)} and Σ p·φ^γ ${z} differ`);
      // At step level, proposing from p and never resampling, a particle's final weight is its final
      // potential exactly: φ^γ.
      const text = { isEos: (t: number) => t === TOY_EOS, isLineEnd: () => false, decode };
      const run = await runTwistedSmc(
        lm,
        TOY_PROMPT,
        toyOptions({ level: "step", twist: powered, resample: "never", particles: 16, logFinalPotential: potential, text }),
      );
      for (const q of run.particles) {
        const expected = 0.25 * lowered.logValueOfText(decode(q.tokens));
        assert.ok(Math.abs(q.logWeight - expected) < 1e-9, `log weight ${q.logWeight}, log φ^γ ${expected}`);
      }
      assert.ok(
        run.particles.some((q) => lowered.logValueOfText(decode(q.tokens)) < -1),
        "some particle has a line the verifier doubts (the check can fail)",
      );
    });
  });

  describe("on the shipped model", function () {
    this.timeout(300000);

    it("train --twist token --loss prm trains the digit twist that the token level reads, and resumes exactly", async () => {
      const model = await shippedModel();
      const tmp = mkdtempSync(join(tmpdir(), "tsmc-digit-"));
      const over = { twist: "token", loss: "prm", numExamples: 6, numEpochs: 2, outputLength: 60, numTwistSamples: 8 } as const;
      const whole = await train(tinyTrainConfig(join(tmp, "whole"), over), {}, model);
      assert.equal(whole.stopped, false);
      const stop = new AbortController();
      const dir = join(tmp, "parts");
      const first = await train(
        tinyTrainConfig(dir, over),
        { signal: stop.signal, onBatch: (m) => (m.step === 2 ? stop.abort() : undefined) },
        model,
      );
      assert.equal(first.stopped, true);
      const second = await train(tinyTrainConfig(dir, { ...over, resume: true }), {}, model);
      const read = (path: string) => parseDigitTwistDocument(readTwistDocument(path), path, model.folder);
      const a = read(whole.twistPath),
        b = read(second.twistPath);
      assert.deepEqual(b.verifier.parameters(), a.verifier.parameters());
      assert.deepEqual(b.partial!.net.parameters(), a.partial!.net.parameters());
      assert.deepEqual(b.lengths.toJSON(), a.lengths.toJSON());
      assert.ok(
        a.verifier.p.w2.some((x) => x !== 0) && a.partial!.net.p.w2.some((x) => x !== 0),
        "training moved the verifier and the head",
      );
      assert.equal(a.meta.training?.twist, "token");
      // The file steers token-level SMC on the model it was trained for.
      const twist = loadDigitTwist(whole.twistPath, model.lm.vocabSize, model.folder)!;
      assert.ok(twist.partial && twist.lengths);
      const run = await runTwistedSmc(model.lm, model.tokenizer.encodeProblem(synthesize("test", 1, 9)[0].question), {
        particles: 4,
        level: "token",
        resampling: "systematic",
        essThreshold: 0.5,
        resample: "adaptive",
        maxTokens: 60,
        temperature: 1,
        seed: 1,
        twist,
        text: model.tokenizer,
      });
      assert.ok(run.particles.every((p) => p.finishReason !== null));
    });

    it("learns result lengths from the lines of right samples, and a digit-twist file holds them with the verifier", async () => {
      const model = await shippedModel();
      const { problems } = loadProblems("synthetic", "train", 6, 1);
      const { table, lines } = await resultLengthsOf(model, problems, 8);
      const counted = (t: Record<string, number[]>) => Object.values(t).reduce((a, r) => a + r.reduce((x, y) => x + y, 0), 0);
      assert.ok(lines >= 10, `${lines} right lines`);
      assert.equal(counted(table.counts.fine), lines);
      assert.equal(counted(table.counts.coarse), lines);

      const dir = mkdtempSync(join(tmpdir(), "tsmc-digit-file-"));
      const path = join(dir, "digit-twist.json");
      saveDigitTwist(path, OPEN_VERIFIER, table);
      const loaded = loadDigitTwist(path, model.lm.vocabSize, model.folder);
      assert.ok(loaded?.lengths);
      assert.deepEqual(loaded.verifier.parameters(), openVerifier().parameters());
      const line = { a: "12", op: "+", b: "30", c: "" } as const;
      assert.deepEqual(loaded.lengths.weights(line, 4), table.weights(line, 4));
      // A line-verifier file is a digit twist without lengths; another file is not one.
      assert.equal(loadDigitTwist(OPEN_VERIFIER, model.lm.vocabSize, model.folder)?.lengths, undefined);
      writeFileSync(join(dir, "other.json"), JSON.stringify({ format: "something-else" }));
      assert.equal(loadDigitTwist(join(dir, "other.json"), model.lm.vocabSize), undefined);
      const doc = JSON.parse(readFileSync(path, "utf8"));
      doc.verifier.baseModel.fingerprint = "0".repeat(32);
      writeFileSync(join(dir, "foreign.json"), JSON.stringify(doc));
      assert.throws(() => loadDigitTwist(join(dir, "foreign.json"), model.lm.vocabSize, model.folder), /was trained for model/);
    });

    it("eval --token-twist reads a digit-twist file and a line-verifier file at token level; one reading the result digit below needs the head", async () => {
      const model = await shippedModel();
      const dir = mkdtempSync(join(tmpdir(), "tsmc-digit-eval-"));
      const { table } = await resultLengthsOf(model, loadProblems("synthetic", "train", 3, 1).problems, 4);
      const meta = { baseModel: { name: model.folder.name, fingerprint: modelFingerprint(model.folder) }, created: "now" };
      const verifierFile = (below: 2 | 3) => {
        const path = join(dir, `verifier-${below}.json`);
        saveTwist(path, randomVerifier(4, 11, below), meta);
        return path;
      };
      const digitFile = join(dir, "digit-twist.json");
      saveDigitTwist(digitFile, verifierFile(2), table);
      for (const file of [digitFile, verifierFile(2)]) {
        const r = evalWithTokenTwist(file);
        assert.equal(r.status, 0, r.stderr);
        const report = JSON.parse(r.stdout);
        assert.equal(report.twists.token, file);
        const row = report.rows.find((x: { method: string }) => x.method === "twisted SMC, token level (posterior sample)");
        assert.ok(row.note === undefined && row.accuracy >= 0 && row.accuracy <= 1 && row.seconds > 0, JSON.stringify(row));
      }
      // Alone, a verifier that reads the result digit below cannot read a result while it is written.
      const refused = evalWithTokenTwist(verifierFile(3));
      assert.equal(refused.status, 3, refused.stderr);
      assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
      assert.match(refused.stderr, /needs a partial-result head: pass a digit-twist file/);
    });

    it("with the shipped digit twist, token-level SMC writes more right lines than plain sampling", async () => {
      const model = await shippedModel();
      const twist = loadDigitTwist(join(MODEL_DIR, "twist-token.json"), model.lm.vocabSize, model.folder)!;
      assert.ok(twist.partial && twist.lengths);
      const tally = { twisted: [0, 0], plain: [0, 0] };
      for (const [i, p] of synthesize("test", 12, 11).entries()) {
        for (const kind of ["twisted", "plain"] as const) {
          const run = await runTwistedSmc(model.lm, model.tokenizer.encodeProblem(p.question), {
            particles: 8,
            level: "token",
            resampling: "systematic",
            essThreshold: 0.5,
            resample: "adaptive",
            maxTokens: 96,
            temperature: 1,
            seed: 100 + i,
            twist: kind === "twisted" ? twist : undefined,
            text: model.tokenizer,
          });
          for (const q of run.particles)
            for (const l of arithmeticLines(model.tokenizer.decode(q.tokens))) {
              // The test knows arithmetic; the twist does not.
              tally[kind][0] += +(applyOp(Number(l.a), l.op, Number(l.b)) === Number(l.c));
              tally[kind][1]++;
            }
        }
      }
      const rate = (k: "twisted" | "plain") => tally[k][0] / tally[k][1];
      assert.ok(rate("twisted") > rate("plain") + 0.03, `right lines: twisted ${rate("twisted")}, plain ${rate("plain")}`);
    });
  });
});
