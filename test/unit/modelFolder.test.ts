import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/engine/lm/model/loadModel";
import { defaultModelDir, ModelFolderError, openModelFolder, parseDecoderConfig } from "../../src/engine/lm/model/modelFolder";
import { halfToFloat } from "../../src/engine/lm/decoder/tensorData";
import { TextTokenizer } from "../../src/engine/lm/model/tokenizer";
import { MODEL_DIR } from "./helpers";

describe("model folder loader", () => {
  let dir: string;
  beforeEach(() => {
    dir = join(mkdtempSync(join(tmpdir(), "tsmc-model-")), "m");
    cpSync(MODEL_DIR, dir, { recursive: true });
  });
  afterEach(() => rmSync(join(dir, ".."), { recursive: true, force: true }));

  const editJson = (file: string, edit: (j: Record<string, unknown>) => void) => {
    const j = JSON.parse(readFileSync(join(dir, file), "utf8"));
    edit(j);
    writeFileSync(join(dir, file), JSON.stringify(j));
  };

  it("opens the shipped model, with the ONNX file in onnx/, and finds it as the default", () => {
    const f = openModelFolder(dir);
    assert.equal(f.onnxPath, join(dir, "onnx/model.onnx"));
    assert.equal(f.config.numLayers, 4);
    assert.equal(f.config.numKvHeads, 4);
    assert.equal(f.config.headDim, 32);
    assert.deepEqual(f.generation.eosTokenIds, [2]);
    assert.equal(defaultModelDir(), MODEL_DIR);
  });

  it("also finds model.onnx at the top of the folder", () => {
    renameSync(join(dir, "onnx/model.onnx"), join(dir, "model.onnx"));
    assert.equal(openModelFolder(dir).onnxPath, join(dir, "model.onnx"));
  });

  const failures: [string, () => void, RegExp][] = [
    ["a missing folder", () => rmSync(dir, { recursive: true }), /does not exist/],
    ["a missing config.json", () => rmSync(join(dir, "config.json")), /has no config\.json/],
    ["a config.json that is not JSON", () => writeFileSync(join(dir, "config.json"), "{oops"), /config\.json is not valid JSON/],
    ["a config without layers", () => editJson("config.json", (j) => delete j.num_hidden_layers), /lacks "num_hidden_layers"/],
    [
      "a bad head count",
      () => editJson("config.json", (j) => (j.num_attention_heads = -4)),
      /"num_attention_heads" must be a positive integer/,
    ],
    ["a missing tokenizer.json", () => rmSync(join(dir, "tokenizer.json")), /has no tokenizer\.json/],
    ["a tokenizer for a bigger vocabulary", () => editJson("config.json", (j) => (j.vocab_size = 100)), /does not belong to this model/],
    [
      "no ONNX file",
      () => rmSync(join(dir, "onnx"), { recursive: true }),
      /has no ONNX decoder \(looked for model\.onnx, decoder_model_merged\.onnx/,
    ],
  ];
  for (const [what, breakIt, message] of failures) {
    it(`names the problem with ${what}`, () => {
      breakIt();
      assert.throws(
        () => openModelFolder(dir),
        (e: Error) => e instanceof ModelFolderError && message.test(e.message),
      );
    });
  }

  it("reads GPT-2-style and grouped-query configs", () => {
    const gpt2 = parseDecoderConfig(
      { model_type: "gpt2", vocab_size: 50257, n_embd: 768, n_layer: 12, n_head: 12, n_positions: 1024, eos_token_id: 50256 },
      "config.json",
    );
    assert.deepEqual(
      [gpt2.numLayers, gpt2.numHeads, gpt2.numKvHeads, gpt2.headDim, gpt2.maxPositions, gpt2.eosTokenIds],
      [12, 12, 12, 64, 1024, [50256]],
    );
    const qwen = parseDecoderConfig(
      {
        model_type: "qwen2",
        vocab_size: 151936,
        hidden_size: 896,
        num_hidden_layers: 24,
        num_attention_heads: 14,
        num_key_value_heads: 2,
        eos_token_id: [151643, 151645],
      },
      "config.json",
    );
    assert.deepEqual([qwen.numKvHeads, qwen.headDim, qwen.eosTokenIds], [2, 64, [151643, 151645]]);
    assert.throws(
      () =>
        parseDecoderConfig(
          { vocab_size: 10, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 3, num_key_value_heads: 2 },
          "c.json",
        ),
      /not a multiple/,
    );
  });

  it("renders the chat template when tokenizer_config.json has one", () => {
    editJson("tokenizer_config.json", (j) => {
      j.chat_template =
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]\n{% endif %}";
    });
    const tok = TextTokenizer.fromFolder(openModelFolder(dir));
    assert.equal(tok.hasChatTemplate, true);
    const ids = tok.encodeProblem("Ava has 3 pens.");
    assert.equal(ids.filter((i) => i === 1).length, 1, "one <bos>, from the template");
    assert.equal(tok.decode(ids), "[user] Ava has 3 pens.\n[assistant]\n");
  });

  it("converts half-precision values", () => {
    assert.deepEqual([0x3c00, 0xc000, 0x0000, 0x7bff, 0x0001, 0x7c00].map(halfToFloat), [1, -2, 0, 65504, 2 ** -24, Infinity]);
    assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  });

  it("names a truncated ONNX file when it is loaded", async () => {
    const onnx = join(dir, "onnx/model.onnx");
    writeFileSync(onnx, readFileSync(onnx).subarray(0, 5000));
    await assert.rejects(
      loadModel(dir),
      (e: Error) => e instanceof ModelFolderError && /model\.onnx is not a valid ONNX model .*truncated or corrupt/.test(e.message),
    );
  });

  it("names a config that disagrees with the ONNX graph", async () => {
    editJson("config.json", (j) => (j.num_hidden_layers = 6));
    await assert.rejects(loadModel(dir), /has 4 past_key_values layers but config\.json says num_hidden_layers 6/);
  });

  it("names KV shapes that disagree with config.json", async () => {
    editJson("config.json", (j) => (j.num_key_value_heads = 2));
    await assert.rejects(loadModel(dir), /KV cache shape \[\*, 4, \*, 32\] disagrees with config\.json \(2 KV heads of 32\)/);
  });
});
