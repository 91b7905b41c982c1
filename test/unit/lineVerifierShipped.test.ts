/**
 * The line verifier must read the shipped model's own format exactly as it did before it learnt to
 * read real models' notations: the shipped twist (models/tiny-math-llama/twist-step.json) was trained
 * on lines like "12 + 30 = 42". The fixture holds, for 500 synthetic worked solutions, the lines the
 * parser found and log ψ under the shipped twist. The lines were written by the parser as it was before
 * (commit 7f659d6); log ψ was rewritten when the shipped twist was retrained (2026-12-05, and -06 four times), the lines
 * checked unchanged (regenerate only on purpose: WRITE_LINE_FIXTURE=1 npx mocha --no-config -r tsx/cjs
 * <this file>).
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { synthesize } from "../../src/engine/math/problems";
import { arithmeticLines } from "../../src/engine/twist/arithmeticLines";
import { LineVerifier } from "../../src/engine/twist/lineVerifier";
import { loadTwist } from "../../src/engine/twist/twistFile";
import { MODEL_DIR } from "./helpers";

const FIXTURE = join(__dirname, "../fixtures/line-verifier-shipped.json");

interface Reading {
  /** The parsed lines, "a op b = c" joined by ";". */
  lines: string;
  logPsi: number;
}

function readings(): Reading[] {
  const { head } = loadTwist(join(MODEL_DIR, "twist-step.json"));
  assert.ok(head instanceof LineVerifier);
  const texts = [...synthesize("train", 250, 0), ...synthesize("test", 250, 0)].map((p) => p.answer);
  return texts.map((t) => ({
    lines: arithmeticLines(t)
      .map((l) => `${l.a}${l.op}${l.b}=${l.c}`)
      .join(";"),
    logPsi: head.logValueOfText(t),
  }));
}

describe("line verifier on the shipped model's format", () => {
  it("reads 500 synthetic solutions exactly as before (same lines, same log ψ)", () => {
    const now = readings();
    if (process.env.WRITE_LINE_FIXTURE) writeFileSync(FIXTURE, JSON.stringify(now) + "\n");
    const before: Reading[] = JSON.parse(readFileSync(FIXTURE, "utf8"));
    assert.equal(now.length, 500);
    assert.equal(before.length, 500);
    assert.ok(before.every((r) => r.lines.length > 0));
    for (let i = 0; i < now.length; i++) assert.deepEqual(now[i], before[i], `solution ${i}`);
  });
});
