import assert from "node:assert/strict";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { TextTokenizer } from "../../src/engine/lm/model/tokenizer";
import { formatPrompt } from "../../src/engine/math/prompt";
import { synthesize } from "../../src/engine/math/problems";
import { MODEL_DIR } from "./helpers";

describe("tokenizer of the shipped model", () => {
  const folder = openModelFolder(MODEL_DIR);
  const tok = TextTokenizer.fromFolder(folder);
  const unk = 3;

  it("round-trips every synthetic problem and solution exactly, with no unknown token", () => {
    for (const p of [...synthesize("train", 300, 7), ...synthesize("test", 300, 7)]) {
      for (const text of [p.question, p.answer, formatPrompt(p.question) + p.answer]) {
        const ids = tok.encode(text);
        assert.ok(!ids.includes(unk), `unknown token in ${text}`);
        assert.equal(tok.decode(ids), text);
      }
    }
  });

  it("falls back to characters for unseen ASCII words", () => {
    const text = "Zyxt quibbled over 1,234.5 kumquats; why?";
    assert.equal(tok.decode(tok.encode(text)), text);
  });

  it("writes digits one token each, so arithmetic is digit by digit", () => {
    const ids = tok.encode("= 1234");
    assert.equal(ids.length, 5);
  });

  it("builds the prompt with <bos> and ends it where the solution starts", () => {
    const ids = tok.encodeProblem("  Ava has 3 pens.  ");
    assert.equal(ids[0], folder.config.bosTokenId);
    assert.equal(tok.decode(ids), "Question: Ava has 3 pens.\nAnswer:\n");
    assert.equal(tok.isEos(2), true);
    assert.equal(tok.hasChatTemplate, false);
  });
});
