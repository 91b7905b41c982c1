/**
 * Bad input to the command line: one clear line and the right exit code (2 for a usage mistake, 3 for a
 * broken input file or model), never a stack trace or a crash; and problems too long for a command line.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, SpawnSyncReturns } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatSolve, printThenRecord } from "../../src/engine/cli/solveCommand";
import { TextTokenizer } from "../../src/engine/lm/model/tokenizer";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { InputError } from "../../src/engine/util/errors";
import { trainConfigFromFlags } from "../../src/engine/train/flags";
import { UsageError } from "../../src/engine/util/options";
import { SolveResult } from "../../src/engine/solve";
import { MODEL_DIR } from "./helpers";

const CLI = join(__dirname, "../../dist/cli.js");
const run = (args: string[], input?: string) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60000, input });
const PROBLEM = "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?";
const QUICK = ["--particles", "2", "--max-tokens", "24", "--threads", "1", "--seed", "1"];

/** The failure is one line on stderr, with no stack trace and nothing on stdout. */
function assertOneLine(r: SpawnSyncReturns<string>, code: number, message: RegExp, what: string): void {
  assert.equal(r.status, code, `${what}: exit ${r.status} (signal ${r.signal}), stderr ${r.stderr}`);
  assert.match(r.stderr, message, what);
  assert.equal(r.stderr.trim().split("\n").length, 1, `${what}: one line, got ${r.stderr}`);
  assert.match(r.stderr, /^twisted-smc: /, what);
}

/** A copy of the shipped model folder to break. */
function modelCopy(tmp: string, name: string): string {
  const dir = join(tmp, name);
  cpSync(MODEL_DIR, dir, { recursive: true });
  return dir;
}

describe("command-line input", function () {
  this.timeout(120000);
  const tmp = mkdtempSync(join(tmpdir(), "tsmc-input-"));

  describe("the problem text", () => {
    it("refuses a problem argument too long for onnxruntime before starting it, pointing to --file and stdin", () => {
      // 30 KB on the command line crashed onnxruntime-node with a segfault (exit 139, no message).
      const long = "a".repeat(30000) + " 3 apples";
      for (const command of ["solve", "sample"]) {
        const r = run([command, long, "--threads", "1"]);
        assertOneLine(r, 2, /problem is 30,009 bytes.*--file FILE.*standard input/, command);
      }
    });

    it("reads the problem from --file and from standard input with -", () => {
      const file = join(tmp, "problem.txt");
      writeFileSync(file, `${PROBLEM}\n`);
      const fromArg = run(["solve", PROBLEM, ...QUICK, "--json"]);
      assert.equal(fromArg.status, 0, fromArg.stderr);
      const expected = JSON.parse(fromArg.stdout);
      for (const [args, input] of [
        [["solve", "--file", file], undefined],
        [["solve", "-"], `${PROBLEM}\n`],
      ] as const) {
        const r = run([...args, ...QUICK, "--json"], input);
        assert.equal(r.status, 0, r.stderr);
        const got = JSON.parse(r.stdout);
        assert.equal(got.problem, PROBLEM);
        assert.deepEqual(got.particles, expected.particles, args.join(" "));
      }
      const sampled = run(["sample", "--file", file, "-k", "2", "--max-tokens", "8", "--threads", "1", "--json"]);
      assert.equal(sampled.status, 0, sampled.stderr);
      assert.equal(JSON.parse(sampled.stdout).problem, PROBLEM);
    });

    it("says in one line that an empty problem needs a text", () => {
      const empty = join(tmp, "empty.txt");
      writeFileSync(empty, " \n");
      const cases: [string[], string | undefined, RegExp][] = [
        [["solve", ""], undefined, /^twisted-smc: solve needs a problem text: /],
        [["solve"], undefined, /^twisted-smc: solve needs a problem text: /],
        [["solve", "--file", empty], undefined, /solve needs a problem text: .*empty\.txt is empty/],
        [["solve", "-"], "", /solve needs a problem text: standard input was empty/],
        [["sample", "  "], undefined, /^twisted-smc: sample needs a problem text: /],
      ];
      for (const [args, input, message] of cases) assertOneLine(run(args, input), 2, message, JSON.stringify(args));
    });

    it("refuses a problem given twice, and a --file it cannot read", () => {
      const file = join(tmp, "twice.txt");
      writeFileSync(file, PROBLEM);
      assertOneLine(run(["solve", PROBLEM, "--file", file]), 2, /either as an argument or with --file/, "both");
      assertOneLine(run(["solve", "--file", join(tmp, "missing.txt")]), 3, /cannot read the problem file .*missing\.txt/, "missing");
      assertOneLine(run(["solve", "--file", tmp]), 3, /cannot read the problem file .*: it is a folder/, "folder");
    });
  });

  describe("arguments", () => {
    it("maps every parseArgs error to exit code 2 with one line", () => {
      const cases: [string[], RegExp][] = [
        [["grade", "--jsonl", "x.jsonl", "stray"], /Unexpected argument 'stray'/],
        [["eval", "stray"], /Unexpected argument 'stray'/],
        [["solve", "x", "--seed"], /argument missing/],
        [["solve", "x", "--json=yes"], /does not take an argument/],
        [["grade"], /grade needs --jsonl FILE \(see twisted-smc grade --help\)/],
        [["data", "frobnicate"], /unknown data command "frobnicate" \(see twisted-smc data --help\)/],
      ];
      for (const [args, message] of cases) assertOneLine(run(args), 2, message, args.join(" "));
    });

    it("bounds --particles to 1..4096 and --threads to 1..256 everywhere", () => {
      const cases: [string[], RegExp][] = [
        [["solve", "x", "--particles", "4097"], /--particles must be an integer from 1 to 4096, got "4097"/],
        [["solve", "x", "--threads", "1000"], /--threads must be an integer from 1 to 256, got "1000"/],
        [["sample", "x", "-k", "5000"], /--samples must be an integer from 1 to 4096/],
        [["sample", "x", "--threads", "0"], /--threads must be an integer from 1 to 256/],
        [["eval", "--particles", "100000"], /--particles must be an integer from 1 to 4096/],
        [["eval", "--threads", "999"], /--threads must be an integer from 1 to 256/],
        [["train", "--threads", "999"], /--threads must be an integer from 1 to 256/],
        [["train", "--num-twist-samples", "5000"], /--num_twist_samples must be an integer from 1 to 4096/],
        [["solve", "x", "--seed=-1"], /--seed must be an integer >= 0, got "-1"/],
        [["solve", "x", "--seed", "-1"], /Option '--seed' argument is ambiguous\. Did you forget/],
        [["sample", "x", "--seed", "1.5"], /--seed must be an integer >= 0/],
      ];
      for (const [args, message] of cases) assertOneLine(run(args), 2, message, args.join(" "));
    });

    it("trainConfigFromFlags refuses a key it does not know, and keeps the CLI's own", () => {
      assert.throws(
        () => trainConfigFromFlags({ num_examples: 2, num_exampels: 3 }),
        (e: Error) => e instanceof UsageError && /unknown train flag "num_exampels"/.test(e.message),
      );
      assert.throws(
        () => trainConfigFromFlags({ "num-examples": 2 }),
        (e: Error) => e instanceof UsageError && /unknown train flag "num-examples"/.test(e.message),
      );
      const config = trainConfigFromFlags({ num_examples: "2", threads: "2", progress: "json", help: false, resume: true });
      assert.equal(config.numExamples, 2);
      assert.equal(config.threads, 2);
      assert.equal(config.resume, true);
      assert.throws(() => trainConfigFromFlags({ num_twist_samples: 4097 }), /--num_twist_samples must be an integer from 1 to 4096/);
    });
  });

  describe("--record", () => {
    it("refuses a record path it cannot write before the work starts", () => {
      const file = join(tmp, "a-file");
      writeFileSync(file, "");
      const cases: [string, RegExp][] = [
        [tmp, /--record .* is a folder/],
        [join(file, "run.json"), /--record .*a-file is not a folder/],
      ];
      for (const [path, message] of cases) {
        const started = Date.now();
        const r = run(["solve", PROBLEM, ...QUICK, "--record", path]);
        assertOneLine(r, 2, message, path);
        assert.equal(r.stdout, "", "no solve ran");
        assert.ok(Date.now() - started < 20000);
      }
      // A folder that does not exist yet is made, as before.
      const nested = join(tmp, "new", "folder", "run.json");
      const ok = run(["solve", PROBLEM, ...QUICK, "--record", nested]);
      assert.equal(ok.status, 0, ok.stderr);
      assert.ok(JSON.parse(readFileSync(nested, "utf8")).steps.length > 0);
    });

    it("prints the answer when the record cannot be written at the end, then the error", () => {
      const out: string[] = [];
      const log = (s: string) => void out.push(s);
      assert.throws(
        () =>
          printThenRecord("Answer: 42", { file: "/x/run.json", record: { steps: [] } }, log, () => {
            throw Object.assign(new Error("EIO: i/o error, open '/x/run.json'"), { code: "EIO" });
          }),
        (e: Error) => e instanceof InputError && /could not write the record \/x\/run\.json: EIO/.test(e.message),
      );
      assert.deepEqual(out, ["Answer: 42"]);
      let written = "";
      printThenRecord("Answer: 7", { file: "/y/run.json", record: { a: 1 } }, log, (_, data) => void (written = String(data)));
      assert.equal(written, '{"a":1}\n');
      if (process.getuid?.() === 0) {
        // root passes the access check on /proc, where no file can be made: the failure comes after the solve.
        const r = run(["solve", PROBLEM, ...QUICK, "--record", "/proc/tsmc-run.json"]);
        assert.notEqual(r.status, 0);
        assert.match(r.stdout, /^Answer: /m);
        assert.match(r.stderr, /^twisted-smc: could not write the record \/proc\/tsmc-run\.json: /);
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      }
    });
  });

  describe("broken model folders", () => {
    it("names tokenizer_config.json when its chat template cannot be parsed or rendered", () => {
      const cases: [string, RegExp][] = [
        ["{% if %}", /chat_template .*cannot be parsed/],
        ["{% for m in messages %}{{ m.content | nosuchfilter }}{% endfor %}", /chat_template .*cannot be rendered.*nosuchfilter/],
      ];
      cases.forEach(([template, message], i) => {
        const dir = modelCopy(tmp, `template-${i}`);
        const configPath = join(dir, "tokenizer_config.json");
        writeFileSync(configPath, JSON.stringify({ ...JSON.parse(readFileSync(configPath, "utf8")), chat_template: template }));
        assert.throws(
          () => TextTokenizer.fromFolder(openModelFolder(dir)),
          (e: Error) => e instanceof InputError && e.message.includes(configPath) && message.test(e.message),
        );
        const r = run(["sample", PROBLEM, "--model", dir, "-k", "1", "--threads", "1"]);
        assertOneLine(r, 3, message, template);
        assert.ok(r.stderr.includes(configPath), r.stderr);
      });
    });

    it("names both vocabulary sizes and both files when config.json and the ONNX graph disagree", () => {
      const dir = modelCopy(tmp, "vocab-400");
      const configPath = join(dir, "config.json");
      writeFileSync(configPath, readFileSync(configPath, "utf8").replace('"vocab_size": 332', '"vocab_size": 400'));
      for (const args of [
        ["sample", PROBLEM, "-k", "1"],
        ["solve", PROBLEM, "--twist", "none", ...QUICK],
      ]) {
        const r = run([...args, "--model", dir, "--threads", "1"]);
        assertOneLine(r, 3, /model\.onnx.* 332 .*config\.json.* 400/, args[0]);
      }
    });
  });

  describe("what the CLI echoes", () => {
    it("escapes control characters of the problem and of the chosen solution", () => {
      const result = {
        problem: "Ava has\x1b[31m 3\r pens\x00.\nHow many?",
        answer: "3",
        probability: 1,
        posterior: [{ answer: "3", probability: 1, particles: 1 }],
        confidence: { kind: "clear", summary: "3 (posterior 100.0%)" },
        unanswered: 0,
        particles: [{ text: "3 pens\x1b[2J\x07\u202e\n#### 3", answer: "3", logWeight: 0 }],
        ess: [1],
        resampledAt: [],
        steps: 1,
        level: "token",
        twist: null,
        logZ: 0,
        model: "m",
        device: "cpu",
        timing: { totalMs: 1, forwardPasses: 1, generatedTokens: 1, tokensPerSecond: 1 },
      } as unknown as SolveResult;
      const text = formatSolve(result);
      // eslint-disable-next-line no-control-regex -- no control character may reach the terminal
      assert.doesNotMatch(text, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
      assert.match(text, /^Problem: Ava has\\x1b\[31m 3\\x0d pens\\x00\.$/m);
      assert.match(text, /^ {9}How many\?$/m);
      assert.match(text, /^ {2}3 pens\\x1b\[2J\\x07\\u\{202e\}$/m);
      assert.match(text, /^ {2}#### 3$/m);
    });
  });

  describe("the engine over --stdio", () => {
    for (const [what, bytes] of [
      ["a Content-Length that is not a number", Buffer.from("Content-Length: abc\r\n\r\n{}")],
      ["a header without a colon", Buffer.from("garbage bytes\r\n\r\n")],
      ["a body that is not JSON", Buffer.from("Content-Length: 5\r\n\r\n{{{{{")],
    ] as const) {
      it(`ends the connection with one line and a non-zero exit on ${what}`, async () => {
        const child = spawn(process.execPath, [CLI, "serve", "--stdio"], { stdio: ["pipe", "pipe", "pipe"] });
        let stderr = "";
        child.stderr.on("data", (d) => (stderr += d));
        child.stdin.write(bytes); // and keep standard input open, as an editor would
        const code = await new Promise<number | string | null>((resolve) => {
          const timer = setTimeout(() => {
            child.kill();
            resolve("hung");
          }, 15000);
          child.on("exit", (c, signal) => {
            clearTimeout(timer);
            resolve(c ?? signal);
          });
        });
        assert.equal(code, 3, `exit ${code}, stderr: ${stderr}`);
        assert.match(stderr, /^twisted-smc: the engine's input is not a JSON-RPC stream: .+; closing the connection\n$/);
      });
    }
  });
});
