import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { taskArgs } from "../../src/extension/taskArgs";

describe("training tasks", () => {
  it("turn a tasks.json definition with the seed's flag names into the trainer's command line", () => {
    assert.deepEqual(
      taskArgs({ type: "twisted-smc", num_examples: 100, learning_rate: 1e-5, resume: true, split: "train", loss: undefined, seed: 0 }),
      ["train", "--num_examples", "100", "--learning_rate", "0.00001", "--resume", "--split", "train", "--seed", "0", "--progress", "json"],
    );
    assert.deepEqual(taskArgs({ type: "twisted-smc", command: "eval", n: 100 }), ["eval", "--n", "100"]);
  });

  it("produce command lines the CLI accepts (every flag of the task schema is a trainer flag)", () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, "../../package.json"), "utf8"));
    const schema = pkg.contributes.taskDefinitions[0].properties as Record<string, { type: string }>;
    const trainFlags = Object.keys(schema).filter((k) => !["command", "n", "particles"].includes(k));
    const help = spawnSync(process.execPath, [join(__dirname, "../../dist/cli.js"), "train", "--help"], { encoding: "utf8" }).stdout;
    for (const f of trainFlags) assert.ok(help.includes(`--${f} `), `train --help documents --${f}`);
  });
});
