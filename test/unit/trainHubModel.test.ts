/**
 * `train --model_name org/name` on GSM8K, end to end from the built CLI: the model is a grouped-query
 * Llama-layout decoder (test/fixtures/llama-gqa-tiny) laid out as a Hugging Face cache snapshot
 * (blobs/, snapshots/COMMIT/ links into them, refs/main), as `models pull` leaves it. Each objective
 * trains a twist that `solve --model org/name --twist` then runs with, and the twist and the checkpoint
 * name the Hub id. A Hub id that is not in the cache is one line naming the pull command (exit 3).
 * Skips the GSM8K runs where GSM8K is absent.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { hubIdOfFolder } from "../../src/engine/hub/cache";
import { gsm8kIfPresent } from "./helpers";
import { writeModelFolder } from "../../scripts/fixtures/realLayouts";

const ROOT = join(__dirname, "../..");
const CLI = join(ROOT, "dist/cli.js");
const FIXTURE = join(__dirname, "../fixtures/llama-gqa-tiny");
const FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.onnx"];
const ID = "acme/gqa-tiny";
const COMMIT = "e".repeat(40);

/** A folder as `models pull` leaves a repository: each file a blob named by its hash, linked from the snapshot. */
function hubCache(root: string, source = FIXTURE, id = ID): string {
  const cache = join(root, "hub");
  const repo = join(cache, `models--${id.replace("/", "--")}`);
  const snapshot = join(repo, "snapshots", COMMIT);
  mkdirSync(join(repo, "blobs"), { recursive: true });
  mkdirSync(snapshot, { recursive: true });
  mkdirSync(join(repo, "refs"), { recursive: true });
  writeFileSync(join(repo, "refs", "main"), COMMIT);
  const files = source === FIXTURE ? FILES : readdirSync(source, { recursive: true }).map(String);
  for (const f of files) {
    if (statSync(join(source, f)).isDirectory()) {
      mkdirSync(join(snapshot, f), { recursive: true });
      continue;
    }
    const hash = createHash("sha256")
      .update(readFileSync(join(source, f)))
      .digest("hex");
    copyFileSync(join(source, f), join(repo, "blobs", hash));
    symlinkSync(join(relative(dirname(join(snapshot, f)), join(repo, "blobs")), hash), join(snapshot, f));
  }
  return cache;
}

describe("train --model_name with a Hub id", function () {
  this.timeout(120000);
  const root = mkdtempSync(join(tmpdir(), "tsmc-train-hub-"));
  const cache = hubCache(root);
  const gsm8k = gsm8kIfPresent();
  const env = {
    ...process.env,
    HF_HUB_CACHE: cache,
    HF_HOME: join(root, "hf-home"),
    TWISTED_SMC_CACHE_DIR: join(root, "prepared"),
    ...(gsm8k ? { TWISTED_SMC_GSM8K: gsm8k } : {}),
  };
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { cwd: root, encoding: "utf8", timeout: 120000, env });
  const SMALL = ["--dataset", "gsm8k", "--num_examples", "2", "--num_epochs", "1", "--batch_size", "2"];
  const TINY = ["--num_twist_samples", "2", "--output_length", "12", "--rank", "2", "--threads", "1", "--save_every", "1"];

  it("names a cache snapshot by its Hub id, and nothing else", () => {
    assert.equal(hubIdOfFolder(join(cache, "models--acme--gqa-tiny", "snapshots", COMMIT)), ID);
    assert.equal(hubIdOfFolder(`/c/models--my-org--Qwen2.5-0.5B-Instruct/snapshots/${COMMIT}/`), "my-org/Qwen2.5-0.5B-Instruct");
    assert.equal(hubIdOfFolder(join(FIXTURE)), undefined);
    assert.equal(hubIdOfFolder("/c/models--acme--gqa-tiny/blobs"), undefined);
    assert.equal(readlinkSync(join(cache, "models--acme--gqa-tiny", "snapshots", COMMIT, "model.onnx")).startsWith("../../blobs/"), true);
  });

  for (const [what, flags, level] of [
    ["the line verifier (prm)", ["--twist", "step", "--loss", "prm"], "step"],
    ["the value head on hidden states (bce)", ["--twist", "step", "--loss", "bce"], "step"],
    ["the token head (ctl)", ["--twist", "token", "--loss", "ctl"], "token"],
  ] as const) {
    it(`trains ${what} on GSM8K and solve runs with the twist it wrote`, function () {
      if (!gsm8k) this.skip();
      const out = join(root, `out-${flags[3]}`);
      const r = run("train", "--model_name", ID, ...SMALL, ...TINY, ...flags, "--output_dir", out);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`^Training a ${level}-level twist \\(${flags[3]}\\) for .*models--acme--gqa-tiny/snapshots/${COMMIT}$`, "m"),
      );
      assert.match(r.stdout, /data: .*train\.jsonl, 2 problems, 1 batches per epoch × 1 epochs/);
      assert.match(r.stdout, /^Done: 1 batches\. Twist written to /m);

      const twist = JSON.parse(readFileSync(join(out, "twist.json"), "utf8"));
      const checkpoint = JSON.parse(readFileSync(join(out, "checkpoint.json"), "utf8"));
      for (const doc of [twist, checkpoint.twist]) {
        assert.equal(doc.baseModel.name, ID);
        assert.equal(doc.training.model, ID);
        assert.equal(doc.training.dataset, "gsm8k");
        assert.equal(doc.training.loss, flags[3]);
      }
      assert.equal(readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").length, 1);

      const solve = run(
        "solve",
        "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?",
        ...["--model", ID, "--twist", join(out, "twist.json"), "--level", level],
        ...["--particles", "3", "--max-tokens", "12", "--threads", "1", "--json"],
      );
      assert.equal(solve.status, 0, solve.stdout + solve.stderr);
      const result = JSON.parse(solve.stdout);
      assert.equal(result.particles.length, 3);
      assert.equal(result.model, ID);
    });
  }

  it("resumes a run on a Hub id from its checkpoint", function () {
    if (!gsm8k) this.skip();
    const out = join(root, "out-resume");
    const args = ["train", "--model_name", ID, ...SMALL, ...TINY, "--output_dir", out];
    assert.equal(run(...args).status, 0);
    const r = run(...args.map((a, i) => (args[i - 1] === "--num_epochs" ? "2" : a)), "--resume");
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /resuming after batch 1/);
    assert.match(r.stdout, /^Done: 2 batches/m);
  });

  it("refuses a Hub id not in the cache in one line naming the pull command (exit 3), as solve does, and writes nothing", () => {
    const out = join(root, "out-absent");
    const said = (stderr: string) => stderr.split("\n").filter((l) => l.startsWith("twisted-smc"));
    const line = "twisted-smc: acme/absent is not downloaded (and no folder of that name exists): run twisted-smc models pull acme/absent";
    for (const extra of [[], ["--dtype", "fp32"]]) {
      const r = run("train", "--model_name", "acme/absent", ...SMALL, ...extra, "--output_dir", out);
      assert.equal(r.status, 3, r.stdout + r.stderr);
      assert.deepEqual(said(r.stderr), [line]);
      assert.equal(r.stdout, "");
      assert.equal(existsSync(out), false);
    }
    const revision = run("train", "--model_name", "acme/absent@v2", "--output_dir", out);
    assert.equal(revision.status, 3);
    assert.deepEqual(said(revision.stderr), [
      "twisted-smc: acme/absent@v2 is not downloaded (and no folder of that name exists): run twisted-smc models pull acme/absent --revision v2",
    ]);
    const solve = run("solve", "1 + 1?", "--model", "acme/absent");
    assert.equal(solve.status, 3);
    assert.deepEqual(said(solve.stderr), [line]);
  });

  describe("a real-layout download: Qwen2.5's q4 transformers.js export (onnx/model_q4.onnx, 151,936 tokens, its chat template)", () => {
    const QWEN = "onnx-community/Qwen2.5-0.5B-Instruct";
    before(() => {
      const source = join(root, "qwen-download");
      writeModelFolder(source, "qwen2.5", { precision: "q4" });
      hubCache(root, source, QWEN);
    });
    for (const [what, loss] of [
      ["the value head on its hidden states (bce)", "bce"],
      ["the line verifier (prm)", "prm"],
    ] as const)
      it(`trains ${what} on GSM8K, and solve runs with the twist`, function () {
        if (!gsm8k) this.skip();
        const out = join(root, `out-qwen-${loss}`);
        const r = run("train", "--model_name", QWEN, ...SMALL, ...TINY, "--twist", "step", "--loss", loss, "--output_dir", out);
        assert.equal(r.status, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /^Done: 1 batches\. Twist written to /m);
        assert.doesNotMatch(r.stderr, /unprepared/);
        const twist = JSON.parse(readFileSync(join(out, "twist.json"), "utf8"));
        assert.equal(twist.baseModel.name, QWEN);
        if (loss === "bce") assert.deepEqual([twist.kind, twist.hiddenSize], ["step", 64], "a value head on the 64-wide hidden state");
        const solve = run(
          "solve",
          "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?",
          ...["--model", QWEN, "--twist", join(out, "twist.json"), "--level", "step"],
          ...["--particles", "4", "--max-tokens", "16", "--threads", "1", "--json"],
        );
        assert.equal(solve.status, 0, solve.stdout + solve.stderr);
        const result = JSON.parse(solve.stdout);
        assert.equal(result.model, QWEN);
        assert.equal(result.modelFile, "onnx/model_q4.onnx");
        assert.equal(result.particles.length, 4);
      });
  });
});
