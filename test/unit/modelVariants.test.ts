/**
 * Every common export's file name (transformers.js's dtypes in onnx/, Optimum's at the top), --dtype
 * and --onnx-file, and the SMC-prepared copies kept in the cache folder, never in the model's: the
 * model folder is byte for byte unchanged after a run, read-only and external data included.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, SpawnSyncOptions } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cacheDirFromEnv } from "../../src/engine/environment";
import {
  DTYPE_ORDER,
  DTYPES,
  dtypeFiles,
  ModelFolderError,
  modelFileOptions,
  openModelFolder,
} from "../../src/engine/lm/model/modelFolder";
import { externalDataLocations } from "../../src/engine/lm/onnx/externalData";
import { prepareForSmc, preparedDir } from "../../src/engine/lm/onnx/prepareGraph";
import { UsageError } from "../../src/engine/util/options";
import { Methods, MODEL_DTYPES, MODEL_VARIANTS } from "../../src/protocol/protocol";
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from "vscode-jsonrpc/node";
import { toExternalData } from "./externalData";
import { smcReadySource } from "../../src/engine/lm/decoder/decoderSession";
import { GRAPH, MODEL } from "../../src/engine/lm/onnx/graphBuild";
import { bytesField, concat, fields, message, text } from "../../src/engine/lm/onnx/protoWire";
import { folderSnapshot, MODEL_DIR } from "./helpers";
import { loadModel, variantDevice } from "../../src/engine/lm/model/loadModel";
import { precheck } from "../../src/engine/lm/decoder/device";
import { OnnxDecoder } from "../../src/engine/lm/decoder/onnxDecoder";

const CLI = join(__dirname, "../../dist/cli.js");
const ENGINE = join(__dirname, "../../dist/engine.js");
const GPT2 = join(__dirname, "../fixtures/gpt2-tiny");
const FOLDER_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"];

/** A model folder holding the shipped model's JSON files and its fp32 graph under `names` (the name decides the choice). */
function folderWith(root: string, source: string, onnx: string, names: string[]): string {
  const dir = mkdtempSync(join(root, "m-"));
  for (const f of FOLDER_FILES) if (existsSync(join(source, f))) cpSync(join(source, f), join(dir, f));
  for (const name of names) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    cpSync(onnx, join(dir, name));
  }
  return dir;
}

describe("model variants and the prepared-graph cache", function () {
  this.timeout(120000);
  let root: string;
  const shipped = join(MODEL_DIR, "onnx/model.onnx");
  before(() => {
    root = mkdtempSync(join(tmpdir(), "tsmc-variants-"));
    chmodSync(root, 0o755);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const run = (args: string[], env: Record<string, string>, options: SpawnSyncOptions = {}) =>
    spawnSync(process.execPath, [CLI, ...args], {
      encoding: "utf8",
      timeout: 90000,
      ...options,
      env: { ...process.env, ...env },
    }) as { status: number | null; stdout: string; stderr: string };

  describe("file choice", () => {
    for (const dtype of DTYPES) {
      for (const name of dtypeFiles(dtype)) {
        it(`finds a folder holding only ${name} (${dtype})`, () => {
          const dir = folderWith(root, MODEL_DIR, shipped, [name]);
          const f = openModelFolder(dir);
          assert.equal(f.onnxFile, name);
          assert.equal(f.dtype, dtype);
          assert.equal(openModelFolder(dir, { dtype }).onnxFile, name);
        });
      }
    }

    it("takes the CPU's order by default and the GPU's for a GPU named outright", () => {
      const all = DTYPES.map((d) => dtypeFiles(d)[1]);
      const dir = folderWith(root, MODEL_DIR, shipped, all);
      assert.equal(openModelFolder(dir).dtype, DTYPE_ORDER.cpu[0]);
      assert.equal(openModelFolder(dir, { device: "auto" }).dtype, "fp32");
      assert.equal(openModelFolder(dir, { device: "webgpu" }).dtype, "fp16");
      assert.equal(openModelFolder(dir, { device: "cuda" }).onnxFile, "onnx/model_fp16.onnx");
      rmSync(join(dir, "onnx/model.onnx"));
      assert.equal(openModelFolder(dir).dtype, "quantized");
      for (const d of DTYPES.filter((x) => x !== "fp32")) assert.equal(openModelFolder(dir, { dtype: d }).dtype, d);
    });

    it("--device auto takes the order of the device it resolves to: a GPU's where one passes the checks, else the CPU's", async () => {
      const all = DTYPES.map((d) => dtypeFiles(d)[1]);
      const dir = folderWith(root, MODEL_DIR, shipped, all);
      const asked: string[] = [];
      const gpu = variantDevice("auto", (d, request) => (asked.push(`${d}:${request}`), d === "cuda" ? "no CUDA libraries" : undefined));
      assert.deepEqual([gpu, asked], ["webgpu", ["cuda:auto", "webgpu:auto"]]);
      assert.equal(openModelFolder(dir, { device: gpu }).dtype, "fp16");
      const cpu = variantDevice("auto", (d) => (d === "cpu" ? "never asked" : `no ${d}`));
      assert.equal(cpu, "cpu");
      assert.equal(openModelFolder(dir, { device: cpu }).dtype, "fp32");
      assert.equal(
        variantDevice("auto", () => undefined),
        "cuda",
      );
      // A device named is its own order; no check is made.
      for (const d of ["cpu", "webgpu", "cuda"] as const)
        assert.equal(
          variantDevice(d, () => assert.fail("checked")),
          d,
        );
      // Here (no GPU): auto resolves to the CPU, and loads the CPU's first file.
      const here = variantDevice("auto");
      assert.equal(here, precheck("cuda", "auto") === undefined ? "cuda" : precheck("webgpu", "auto") === undefined ? "webgpu" : "cpu");
      if (here === "cpu") {
        const model = await loadModel(dir, { device: "auto", threads: 1 });
        try {
          assert.equal(model.folder.onnxFile, "onnx/model.onnx");
          assert.match((model.lm as OnnxDecoder).device, /^cpu/);
        } finally {
          await model.lm.dispose();
        }
      }
    });

    it("--device auto: when the GPU it expected cannot open the model, the CPU loads its own first file", function () {
      if (process.platform !== "linux") this.skip();
      // A Vulkan loader and a hardware driver that pass the checks made before opening, but load nothing.
      const fake = mkdtempSync(join(root, "vulkan-"));
      writeFileSync(join(fake, "libvulkan.so.1"), "");
      writeFileSync(join(fake, "nvidia_icd.json"), JSON.stringify({ ICD: { library_path: "libGLX_nvidia.so.0" } }));
      const env = { LD_LIBRARY_PATH: fake, VK_DRIVER_FILES: join(fake, "nvidia_icd.json"), TWISTED_SMC_CACHE_DIR: join(fake, "cache") };
      const dir = folderWith(root, MODEL_DIR, shipped, ["onnx/model.onnx", "onnx/model_fp16.onnx"]);
      const expected = variantDevice("auto", (d, request) => precheck(d, request, { ...process.env, ...env }));
      assert.equal(expected, precheck("cuda", "auto") === undefined ? "cuda" : "webgpu");
      assert.equal(openModelFolder(dir, { device: expected }).onnxFile, "onnx/model_fp16.onnx");
      const problem = "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?";
      const r = run(["solve", problem, "--model", dir, "--particles", "2", "--max-tokens", "4", "--device", "auto"], env);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^Model: +\S+ \(onnx\/model\.onnx\) on cpu/m);
      assert.match(r.stdout, /^Device: +cpu \(not used: .*webgpu: /m);
    });

    it("refuses a dtype the folder lacks in one line naming what it has", () => {
      const dir = folderWith(root, MODEL_DIR, shipped, ["onnx/model_q4.onnx", "onnx/model_int8.onnx"]);
      assert.throws(
        () => openModelFolder(dir, { dtype: "fp16" }),
        (e: Error) =>
          e instanceof ModelFolderError &&
          !e.message.includes("\n") &&
          /has no fp16 decoder .*; it has q4 \(onnx\/model_q4\.onnx\), int8 \(onnx\/model_int8\.onnx\)$/.test(e.message),
      );
    });

    it("reads --dtype and --onnx-file (or onnx_file), not both", () => {
      assert.deepEqual(modelFileOptions({}), { dtype: "auto" });
      assert.deepEqual(modelFileOptions({ dtype: "q4" }), { dtype: "q4" });
      assert.deepEqual(modelFileOptions({ onnx_file: "x.onnx" }, "onnx_file"), { dtype: "auto", onnxFile: "x.onnx" });
      assert.throws(() => modelFileOptions({ dtype: "q3" }), UsageError);
      assert.throws(() => modelFileOptions({ dtype: "q4", "onnx-file": "x.onnx" }), /not both/);
    });

    it("solve --dtype runs the renamed copy and names the file; a missing dtype exits 3 in one line", () => {
      const dir = folderWith(root, MODEL_DIR, shipped, ["onnx/model_q4.onnx", "onnx/model_quantized.onnx"]);
      const cache = mkdtempSync(join(root, "cache-"));
      const args = [
        "solve",
        "What is 2 + 3?",
        "--model",
        dir,
        "--particles",
        "2",
        "--max-tokens",
        "8",
        "--device",
        "cpu",
        "--twist",
        "none",
      ];
      const text = run([...args, "--dtype", "q4"], { TWISTED_SMC_CACHE_DIR: cache });
      assert.equal(text.status, 0, text.stderr);
      assert.match(text.stdout, /^Model: {3}m-\w+ \(onnx\/model_q4\.onnx\) on cpu/m);
      const json = run([...args, "--json"], { TWISTED_SMC_CACHE_DIR: cache });
      assert.equal(json.status, 0, json.stderr);
      assert.equal(JSON.parse(json.stdout).modelFile, "onnx/model_quantized.onnx");
      const file = run([...args, "--json", "--onnx-file", "onnx/model_q4.onnx"], { TWISTED_SMC_CACHE_DIR: cache });
      assert.equal(JSON.parse(file.stdout).modelFile, "onnx/model_q4.onnx");
      const missing = run([...args, "--dtype", "fp16"], { TWISTED_SMC_CACHE_DIR: cache });
      assert.equal(missing.status, 3);
      assert.equal(missing.stderr.trim().split("\n").length, 1, missing.stderr);
      assert.match(missing.stderr, /has no fp16 decoder .*it has q4 \(onnx\/model_q4\.onnx\), quantized/);
    });

    it("sample, eval and train take --dtype too", () => {
      const dir = folderWith(root, MODEL_DIR, shipped, ["onnx/model_uint8.onnx"]);
      const env = { TWISTED_SMC_CACHE_DIR: mkdtempSync(join(root, "cache-")) };
      const sample = run(
        ["sample", "What is 2 + 3?", "--model", dir, "-k", "2", "--max-tokens", "4", "--device", "cpu", "--dtype", "uint8"],
        env,
      );
      assert.equal(sample.status, 0, sample.stderr);
      assert.match(sample.stdout, /\(onnx\/model_uint8\.onnx\) on cpu/);
      for (const cmd of [
        ["eval", "--model", dir, "--dtype", "fp16"],
        ["train", "--model_name", dir, "--dtype", "fp16", "--output_dir", join(root, "train-out")],
        ["train", "--model-name", dir, "--onnx-file", "onnx/model_fp16.onnx", "--output_dir", join(root, "train-out")],
      ]) {
        const r = run(cmd, env);
        assert.equal(r.status, 3, `${cmd.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, /fp16/);
      }
    });
  });

  it("warns once, in one line, that a graph whose LM head it cannot find (a quantized one) runs unprepared", () => {
    // gpt2-tiny with its MatMuls renamed as a 4-bit export's: the head search stops at them.
    const NODE_OP_TYPE = 4;
    const renamed = (n: Uint8Array) =>
      concat(
        [...fields(n)].map((f) =>
          f.field === NODE_OP_TYPE && ["MatMul", "Gemm"].includes(text(f)) ? message([[NODE_OP_TYPE, "MatMulNBits"]]) : f.raw,
        ),
      );
    const graph = (g: Uint8Array) =>
      concat([...fields(g)].map((f) => (f.field === GRAPH.node ? bytesField(GRAPH.node, renamed(f.value)) : f.raw)));
    const model = readFileSync(join(GPT2, "model.onnx"));
    const dir = folderWith(root, GPT2, join(GPT2, "model.onnx"), []);
    mkdirSync(join(dir, "onnx"));
    writeFileSync(
      join(dir, "onnx/model_q4.onnx"),
      concat([...fields(model)].map((f) => (f.field === MODEL.graph ? bytesField(MODEL.graph, graph(f.value)) : f.raw))),
    );
    const folder = openModelFolder(dir);
    assert.equal(folder.dtype, "q4");
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
    const before = process.env.TWISTED_SMC_CACHE_DIR;
    process.env.TWISTED_SMC_CACHE_DIR = mkdtempSync(join(root, "cache-"));
    try {
      for (let i = 0; i < 2; i++) assert.equal(smcReadySource(folder, false, false, false).source, folder.onnxPath);
    } finally {
      console.warn = warn;
      if (before === undefined) delete process.env.TWISTED_SMC_CACHE_DIR;
      else process.env.TWISTED_SMC_CACHE_DIR = before;
    }
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.doesNotMatch(warnings[0], /\n/);
    assert.match(warnings[0], /onnx\/model_q4\.onnx runs unprepared \(a quantized graph: .*hidden state cannot run.*slower sampling/);
  });

  describe("the twistedSmc.modelVariant setting", () => {
    it("offers the engine's dtypes, as the protocol lists them", () => {
      assert.deepEqual([...MODEL_DTYPES], [...DTYPES]);
      const pkg = JSON.parse(readFileSync(join(__dirname, "../../package.json"), "utf8"));
      const setting = pkg.contributes.configuration.properties["twistedSmc.modelVariant"];
      assert.deepEqual(setting.enum, [...MODEL_VARIANTS]);
      assert.equal(setting.default, "auto");
    });

    it("reaches the engine: its status names the file loaded, and a variant the folder lacks is refused", async () => {
      const dir = folderWith(root, MODEL_DIR, shipped, ["onnx/model.onnx", "onnx/model_int8.onnx"]);
      const child = spawn(process.execPath, [ENGINE, "--stdio"], {
        stdio: ["pipe", "pipe", "inherit"],
        env: { ...process.env, TWISTED_SMC_CACHE_DIR: mkdtempSync(join(root, "cache-")) },
      });
      const conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
      conn.listen();
      try {
        await conn.sendRequest("initialize", { processId: process.pid, rootUri: null, capabilities: {} });
        conn.sendNotification("initialized", {});
        const solveWith = (variant: (typeof MODEL_VARIANTS)[number]) =>
          conn.sendRequest(Methods.solve, {
            runId: `run-${variant}`,
            problem: "What is 2 + 3?",
            model: { model: dir, twist: "none", device: "cpu", variant },
            smc: { particles: 2, level: "token", resampling: "systematic", essThreshold: 0.5, maxTokens: 8, temperature: 1, seed: 0 },
          });
        await solveWith("int8");
        assert.equal((await conn.sendRequest(Methods.status)).modelFile, "onnx/model_int8.onnx");
        await solveWith("auto");
        assert.equal((await conn.sendRequest(Methods.status)).modelFile, "onnx/model.onnx");
        await assert.rejects(solveWith("q4"), /has no q4 decoder.*it has fp32 \(onnx\/model\.onnx\), int8/);
      } finally {
        conn.dispose();
        child.kill();
      }
    });
  });

  describe("the cache folder", () => {
    const options = { hiddenSize: 64, vocabSize: 332, sampler: true };

    it("is TWISTED_SMC_CACHE_DIR, else $XDG_CACHE_HOME/twisted-smc, else ~/.cache/twisted-smc", () => {
      assert.equal(cacheDirFromEnv({ TWISTED_SMC_CACHE_DIR: "/a/b", XDG_CACHE_HOME: "/x" }), "/a/b");
      assert.equal(cacheDirFromEnv({ XDG_CACHE_HOME: "/x" }), "/x/twisted-smc");
      assert.match(cacheDirFromEnv({ XDG_CACHE_HOME: "relative" }), /\.cache\/twisted-smc$/);
      assert.match(cacheDirFromEnv({}), /\.cache\/twisted-smc$/);
    });

    it("keeps the prepared copy there, reuses it, and prepares again when the source changes", () => {
      const dir = folderWith(root, GPT2, join(GPT2, "model.onnx"), ["model.onnx"]);
      const cache = mkdtempSync(join(root, "cache-"));
      const before = folderSnapshot(dir);
      const first = prepareForSmc(join(dir, "model.onnx"), options, cache);
      assert.equal(first.cached, false);
      assert.ok(first.path.startsWith(preparedDir(join(dir, "model.onnx"), cache)), first.path);
      assert.ok(first.path.startsWith(cache) && first.path.endsWith("model.sampling.smc.onnx"));
      assert.deepEqual(folderSnapshot(dir), before);
      const mtime = statSync(first.path).mtimeMs;
      const second = prepareForSmc(join(dir, "model.onnx"), options, cache);
      assert.equal(second.cached, true);
      assert.equal(second.path, first.path);
      assert.equal(statSync(first.path).mtimeMs, mtime);
      // A newer file of the same size (a re-download): prepared again.
      const later = new Date(Date.now() + 5000);
      utimesSync(join(dir, "model.onnx"), later, later);
      assert.equal(prepareForSmc(join(dir, "model.onnx"), options, cache).cached, false);
      assert.equal(prepareForSmc(join(dir, "model.onnx"), options, cache).cached, true);
      // Other bytes under the same size and mtime (the hash of the file's ends): prepared again.
      const bytes = readFileSync(join(dir, "model.onnx"));
      const { mtime: m } = statSync(join(dir, "model.onnx"));
      const stamp = JSON.parse(readFileSync(first.path.replace(/\.onnx$/, ".json"), "utf8"));
      writeFileSync(join(dir, "model.onnx"), bytes);
      utimesSync(join(dir, "model.onnx"), m, m);
      assert.equal(prepareForSmc(join(dir, "model.onnx"), options, cache).cached, true);
      stamp.source.sampleHash = "0".repeat(64);
      writeFileSync(first.path.replace(/\.onnx$/, ".json"), JSON.stringify(stamp));
      assert.equal(prepareForSmc(join(dir, "model.onnx"), options, cache).cached, false);
    });

    it("leaves the model folder byte for byte unchanged after a solve", () => {
      const dir = folderWith(root, GPT2, join(GPT2, "model.onnx"), ["model.onnx"]);
      const cache = mkdtempSync(join(root, "cache-"));
      const before = folderSnapshot(dir);
      const r = run(["sample", "1 + 1", "--model", dir, "-k", "2", "--max-tokens", "4", "--device", "cpu"], {
        TWISTED_SMC_CACHE_DIR: cache,
      });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(folderSnapshot(dir), before);
      const prepared = readdirSync(join(cache, "prepared"), { recursive: true }).map(String);
      assert.ok(
        prepared.some((p) => p.endsWith(".smc.onnx")),
        prepared.join(", "),
      );
    });

    describe("external data", () => {
      let dir: string;
      before(() => {
        dir = folderWith(root, GPT2, join(GPT2, "model.onnx"), []);
        const { model, data } = toExternalData(readFileSync(join(GPT2, "model.onnx")), "model.onnx_data");
        writeFileSync(join(dir, "model.onnx"), model);
        writeFileSync(join(dir, "model.onnx_data"), data);
        assert.deepEqual(externalDataLocations(model), ["model.onnx_data"]);
      });

      it("runs from another working folder, the model folder unchanged", () => {
        const cache = mkdtempSync(join(root, "cache-"));
        const before = folderSnapshot(dir);
        const args = ["sample", "1 + 1", "--model", dir, "-k", "2", "--max-tokens", "4", "--device", "cpu", "--json"];
        for (let i = 0; i < 2; i++) {
          const r = run(args, { TWISTED_SMC_CACHE_DIR: cache }, { cwd: root });
          assert.equal(r.status, 0, r.stderr);
          assert.equal(JSON.parse(r.stdout).modelFile, "model.onnx");
        }
        assert.deepEqual(folderSnapshot(dir), before);
        assert.ok(readdirSync(join(cache, "prepared"), { recursive: true }).some((p) => String(p).endsWith(".smc.onnx")));
      });

      it("runs from a Hugging Face cache snapshot, whose data file is a link into blobs/, prepared or as exported", () => {
        // The shipped model needs no edits on the CPU (it has the hidden state): it loads as exported.
        const shippedDir = folderWith(root, MODEL_DIR, shipped, []);
        const external = toExternalData(readFileSync(shipped), "model.onnx_data");
        writeFileSync(join(shippedDir, "model.onnx"), external.model);
        writeFileSync(join(shippedDir, "model.onnx_data"), external.data);
        for (const source of [dir, shippedDir]) {
          // models--org--name/{blobs/HASH, snapshots/COMMIT/FILE → ../../blobs/HASH}
          const repo = mkdtempSync(join(root, "models--org--name-"));
          const commit = join(repo, "snapshots", "0123abcd");
          mkdirSync(join(repo, "blobs"));
          mkdirSync(commit, { recursive: true });
          for (const f of readdirSync(source)) {
            const blob = createHash("sha256")
              .update(readFileSync(join(source, f)))
              .digest("hex");
            cpSync(join(source, f), join(repo, "blobs", blob));
            symlinkSync(join("..", "..", "blobs", blob), join(commit, f));
          }
          const cache = mkdtempSync(join(root, "cache-"));
          const before = folderSnapshot(repo);
          const args = ["sample", "1 + 1", "--model", commit, "-k", "2", "--max-tokens", "4", "--device", "cpu"];
          for (let i = 0; i < 2; i++) {
            // The second run finds the prepared copy in the cache.
            const r = run(args, { TWISTED_SMC_CACHE_DIR: cache }, { cwd: root });
            assert.equal(r.status, 0, r.stderr);
          }
          assert.deepEqual(folderSnapshot(repo), before);
          const prepared = readdirSync(cache, { recursive: true }).some((p) => String(p).endsWith(".smc.onnx"));
          assert.equal(prepared, source === dir);
        }
      });

      it("runs from a read-only folder as another user, from memory where the cache cannot be written", function () {
        if (process.getuid?.() !== 0 || spawnSync("runuser", ["-u", "nobody", "--", "true"]).status !== 0) return this.skip(); // needs root to run as nobody (as root, permission bits do not stop writes)
        const ro = mkdtempSync(join(root, "ro-"));
        cpSync(dir, join(ro, "m"), { recursive: true });
        chmodSync(ro, 0o755);
        spawnSync("chmod", ["-R", "a+rX,a-w", join(ro, "m")]);
        const before = folderSnapshot(join(ro, "m"));
        const writable = mkdtempSync(join(root, "cache-"));
        chmodSync(writable, 0o777);
        const unwritable = mkdtempSync(join(root, "cache-"));
        chmodSync(unwritable, 0o555);
        for (const cache of [writable, unwritable]) {
          const r = spawnSync(
            "runuser",
            [
              "-u",
              "nobody",
              "--",
              process.execPath,
              CLI,
              "sample",
              "1 + 1",
              "--model",
              join(ro, "m"),
              "-k",
              "2",
              "--max-tokens",
              "4",
              "--device",
              "cpu",
            ],
            { encoding: "utf8", cwd: "/", timeout: 90000, env: { ...process.env, TWISTED_SMC_CACHE_DIR: cache, HOME: "/nonexistent" } },
          );
          assert.equal(r.status, 0, r.stderr);
          if (cache === unwritable) assert.match(r.stderr, /runs from memory|warning/);
        }
        assert.deepEqual(folderSnapshot(join(ro, "m")), before);
      });
    });
  });
});
