import assert from "node:assert/strict";
import {
  appendFileSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  mkdirSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { getHFHubCachePath, scanCacheDir } from "@huggingface/hub";
import {
  cachedSnapshot,
  hubCacheDir,
  listCachedModels,
  parseRepoId,
  removeCachedModel,
  resolveModelArgument,
} from "../../src/engine/hub/cache";
import { pullModel, PullEvent } from "../../src/engine/hub/pull";
import { AUTO_FP32_MAX_BYTES, selectFiles } from "../../src/engine/hub/variants";
import { DiskFullError, InputError } from "../../src/engine/util/errors";
import { UsageError } from "../../src/engine/util/options";
import { etagOf, FakeHub, variantRepoFiles } from "./hubFixture";
import { mountTinyDisk } from "./tinyDisk";

const COMMIT = "a".repeat(40);
const SIDE = [
  "chat_template.jinja",
  "config.json",
  "generation_config.json",
  "special_tokens_map.json",
  "tokenizer.json",
  "tokenizer_config.json",
];

/** A port nothing listens on (just closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Every file under a snapshot, relative, sorted. */
function snapshotFiles(dir: string, prefix = ""): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? snapshotFiles(join(dir, e.name), `${prefix}${e.name}/`) : [prefix + e.name]))
    .sort();
}

describe("hub: choosing a variant's files", () => {
  const listing = (paths: Record<string, number>) => Object.entries(paths).map(([path, size]) => ({ path, size }));
  const base = { "config.json": 1, "tokenizer.json": 1, "README.md": 1 };

  it("takes the graph and all its data parts, and the side files, nothing else", () => {
    const files = listing({
      ...base,
      "onnx/model_q4.onnx": 5,
      "onnx/model_q4.onnx_data": 5,
      "onnx/model_q4.onnx_data_1": 5,
      "onnx/model_q4f16.onnx": 5,
      "onnx/model.onnx": 9,
    });
    const s = selectFiles(files, "q4");
    assert.ok(!("missing" in s));
    assert.deepEqual(s.files.map((f) => f.path).sort(), [
      "config.json",
      "onnx/model_q4.onnx",
      "onnx/model_q4.onnx_data",
      "onnx/model_q4.onnx_data_1",
      "tokenizer.json",
    ]);
  });

  it("auto: fp32 when small enough, else q4, else int8; Optimum's top-level model.onnx counts as fp32", () => {
    const pick = (paths: Record<string, number>) => {
      const s = selectFiles(listing({ ...base, ...paths }), "auto");
      return "missing" in s ? `missing ${s.missing}` : `${s.dtype} ${s.graph}`;
    };
    assert.equal(pick({ "onnx/model.onnx": 100, "onnx/model_q4.onnx": 10 }), "fp32 onnx/model.onnx");
    assert.equal(
      pick({ "onnx/model.onnx": 100, "onnx/model.onnx_data": AUTO_FP32_MAX_BYTES, "onnx/model_q4.onnx": 10 }),
      "q4 onnx/model_q4.onnx",
    );
    assert.equal(pick({ "onnx/model_fp16.onnx": 10, "onnx/model_int8.onnx": 10 }), "int8 onnx/model_int8.onnx");
    assert.equal(pick({ "model.onnx": 10, "model.onnx_data": 10 }), "fp32 model.onnx");
    assert.equal(pick({}), "missing auto");
  });

  it("a dtype the repository lacks names those it has", () => {
    const s = selectFiles(listing({ ...base, "onnx/model.onnx": 1, "onnx/model_fp16.onnx": 1 }), "q4");
    assert.deepEqual(s, { missing: "q4", available: ["fp32", "fp16"] });
  });
});

describe("hub: model ids and the cache folder", () => {
  it("reads HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub", () => {
    assert.equal(hubCacheDir({ HF_HUB_CACHE: "/c", HF_HOME: "/h" }), "/c");
    assert.equal(hubCacheDir({ HF_HOME: "/h" }), join("/h", "hub"));
    assert.match(hubCacheDir({}), /\.cache[/\\]huggingface[/\\]hub$/);
    // the same folder @huggingface/hub picks, whatever the environment says
    const saved = { ...process.env };
    try {
      for (const env of [{ HF_HUB_CACHE: "/c" }, { HF_HOME: "/h" }, { XDG_CACHE_HOME: "/x" }, {}]) {
        for (const k of ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"]) delete process.env[k];
        Object.assign(process.env, env);
        assert.equal(hubCacheDir(), getHFHubCachePath(), JSON.stringify(env));
      }
    } finally {
      for (const k of ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"]) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });

  it("parses org/name and org/name@revision, and nothing else", () => {
    assert.deepEqual(parseRepoId("onnx-community/Qwen2.5-0.5B-Instruct"), {
      repo: "onnx-community/Qwen2.5-0.5B-Instruct",
      revision: undefined,
    });
    assert.deepEqual(parseRepoId("org/name@v1.0"), { repo: "org/name", revision: "v1.0" });
    for (const bad of ["name", "/abs/path", "./rel/x", "a/b/c", "../x", "a/..", "a--b/c"]) assert.equal(parseRepoId(bad), undefined, bad);
  });
});

describe("hub: pulling into the Hugging Face cache", function () {
  this.timeout(60000);
  const hub = new FakeHub();
  const files = variantRepoFiles();
  let cache: string;
  let endpoint: string;
  const saved = process.env.HF_HUB_CACHE;

  before(async () => {
    hub.add({ id: "acme/tiny", commit: COMMIT, files });
    hub.add({ id: "acme/gated", commit: "b".repeat(40), files, token: "hf_right" });
    endpoint = await hub.start();
  });
  beforeEach(() => {
    cache = mkdtempSync(join(tmpdir(), "tsmc-hub-"));
    process.env.HF_HUB_CACHE = cache;
  });
  after(async () => {
    await hub.close();
    if (saved === undefined) delete process.env.HF_HUB_CACHE;
    else process.env.HF_HUB_CACHE = saved;
  });

  const pull = (options: Partial<Parameters<typeof pullModel>[0]> = {}, events: PullEvent[] = []) =>
    pullModel({ repo: "acme/tiny", dtype: "q4", endpoint, cacheDir: cache, onEvent: (e) => events.push(e), ...options });

  it("downloads exactly one variant's files, in huggingface_hub's layout", async () => {
    const from = hub.requests.length;
    const r = await pull();
    assert.equal(r.commit, COMMIT);
    assert.equal(r.dtype, "q4");
    const folder = join(cache, "models--acme--tiny");
    assert.equal(r.snapshot, join(folder, "snapshots", COMMIT));
    const wanted = [...SIDE, "onnx/model_q4.onnx", "onnx/model_q4.onnx_data", "onnx/model_q4.onnx_data_1"].sort();
    assert.deepEqual(snapshotFiles(r.snapshot), wanted);
    assert.deepEqual(
      hub
        .downloads(from)
        .map((q) => q.file)
        .sort(),
      wanted,
    );
    // refs/main holds the commit (no newline, as huggingface_hub writes it); blobs are named by etag
    assert.equal(readFileSync(join(folder, "refs", "main"), "utf8"), COMMIT);
    for (const path of wanted) {
      const f = files.find((x) => x.path === path)!;
      const pointer = join(r.snapshot, path);
      assert.ok(lstatSync(pointer).isSymbolicLink(), path);
      const depth = path.split("/").length;
      assert.equal(readlinkSync(pointer), join(...Array<string>(depth + 1).fill(".."), "blobs", etagOf(f)));
      assert.deepEqual(readFileSync(pointer), f.content);
    }
    assert.deepEqual(readdirSync(join(folder, "blobs")).sort(), wanted.map((p) => etagOf(files.find((x) => x.path === p)!)).sort());
    assert.equal(
      r.downloaded,
      wanted.reduce((s, p) => s + files.find((x) => x.path === p)!.content.length, 0),
    );
    assert.equal(cachedSnapshot({ repo: "acme/tiny" }, cache), r.snapshot);
    assert.equal(resolveModelArgument("acme/tiny"), r.snapshot);
    assert.equal(resolveModelArgument(`acme/tiny@${COMMIT}`), r.snapshot);
  });

  it("@huggingface/hub's own cache scanner reads what pull wrote", async () => {
    await pull();
    const scanned = await scanCacheDir(cache);
    assert.deepEqual(scanned.warnings, []);
    assert.deepEqual(
      scanned.repos.map((r) => [r.id, r.revisions.map((v) => [v.commitOid, v.refs])]),
      [[{ name: "acme/tiny", type: "model" }, [[COMMIT, ["main"]]]]],
    );
  });

  it("a model Python's huggingface_hub downloaded is found and not fetched again", async () => {
    // Its layout, by hand: blobs by etag, relative links, refs/main, and the .locks and .no_exist folders it also makes.
    const folder = join(cache, "models--acme--tiny");
    const wanted = [...SIDE, "onnx/model_q4.onnx", "onnx/model_q4.onnx_data", "onnx/model_q4.onnx_data_1"];
    for (const path of wanted) {
      const f = files.find((x) => x.path === path)!;
      mkdirSync(join(folder, "blobs"), { recursive: true });
      writeFileSync(join(folder, "blobs", etagOf(f)), f.content);
      const pointer = join(folder, "snapshots", COMMIT, path);
      mkdirSync(dirname(pointer), { recursive: true });
      symlinkSync(relative(dirname(pointer), join(folder, "blobs", etagOf(f))), pointer);
      mkdirSync(join(cache, ".locks", "models--acme--tiny"), { recursive: true });
      writeFileSync(join(cache, ".locks", "models--acme--tiny", `${etagOf(f)}.lock`), "");
    }
    mkdirSync(join(folder, "refs"));
    writeFileSync(join(folder, "refs", "main"), COMMIT);
    mkdirSync(join(folder, ".no_exist", COMMIT), { recursive: true });
    writeFileSync(join(folder, ".no_exist", COMMIT, "added_tokens.json"), "");
    assert.equal(resolveModelArgument("acme/tiny"), join(folder, "snapshots", COMMIT));
    const from = hub.requests.length;
    assert.equal((await pull()).downloaded, 0);
    assert.deepEqual(hub.downloads(from), []);
    const [listed] = listCachedModels(cache);
    assert.deepEqual([listed.repo, listed.revisions[0].variants], ["acme/tiny", ["q4"]]);
  });

  it("a second pull fetches nothing; another variant adds only its own files to the same snapshot", async () => {
    await pull();
    const from = hub.requests.length;
    const events: PullEvent[] = [];
    const again = await pull({}, events);
    assert.equal(again.downloaded, 0);
    assert.deepEqual(hub.downloads(from), []);
    assert.equal(events.filter((e) => e.event === "cached").length, 9);
    const fp16 = await pull({ dtype: "fp16" });
    assert.deepEqual(
      hub.downloads(from).map((q) => q.file),
      ["onnx/model_fp16.onnx", "onnx/model_fp16.onnx_data"],
    );
    assert.equal(fp16.snapshot, again.snapshot);
    const [listed] = listCachedModels(cache);
    assert.equal(listed.repo, "acme/tiny");
    assert.deepEqual(listed.revisions[0].variants, ["fp16", "q4"]);
    assert.deepEqual(listed.revisions[0].refs, ["main"]);
  });

  it("a download cut mid-file leaves no blob; the next pull resumes it with a range request and checks it", async () => {
    const big = files.find((f) => f.path === "onnx/model_q4.onnx_data")!;
    hub.dropOnce = { path: big.path, afterBytes: 30000 };
    await assert.rejects(pull(), (e: Error) => {
      assert.ok(e instanceof InputError);
      assert.match(
        e.message,
        /^the connection to http:\/\/127\.0\.0\.1:\d+ broke while downloading onnx\/model_q4\.onnx_data .*: run the same command again to resume$/,
      );
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
    const blob = join(cache, "models--acme--tiny", "blobs", etagOf(big));
    assert.ok(!existsSync(blob));
    const kept = lstatSync(`${blob}.incomplete`).size;
    assert.ok(kept > 0 && kept <= 30000, `kept ${kept}`);
    const from = hub.requests.length;
    const events: PullEvent[] = [];
    const r = await pull({}, events);
    assert.deepEqual(readFileSync(join(r.snapshot, big.path)), big.content);
    assert.ok(!existsSync(`${blob}.incomplete`));
    const resumed = hub.downloads(from).find((q) => q.file === big.path);
    assert.equal(resumed?.range, `bytes=${kept}-${big.content.length - 1}`);
    assert.ok(events.some((e) => e.event === "downloaded" && e.path === big.path && e.resumedFrom === kept));
  });

  it("two pulls never write the same file: a live lock holder stops the second, a dead one's lock is taken over", async () => {
    const target = files.find((f) => f.path === "config.json")!;
    const lock = join(cache, ".locks", "models--acme--tiny", `${etagOf(target)}.twisted-smc.lock`);
    mkdirSync(dirname(lock), { recursive: true });
    const other = spawn("sleep", ["30"]);
    try {
      writeFileSync(lock, String(other.pid));
      await assert.rejects(
        pull(),
        /^InputError: another process \(pid \d+\) is downloading config\.json into the cache: let it finish, then run this again$/,
      );
    } finally {
      other.kill();
    }
    await new Promise((resolve) => other.once("exit", resolve));
    const r = await pull();
    assert.deepEqual(readFileSync(join(r.snapshot, "config.json")), target.content);
    assert.deepEqual(readdirSync(dirname(lock)), []);
  });

  it("a cached blob of the wrong size is fetched again", async () => {
    const r = await pull();
    const target = files.find((f) => f.path === "onnx/model_q4.onnx")!;
    const blob = realpathSync(join(r.snapshot, target.path));
    appendFileSync(blob, "junk");
    const config = realpathSync(join(r.snapshot, "config.json"));
    truncateSync(config, 10);
    const from = hub.requests.length;
    const events: PullEvent[] = [];
    await pull({}, events);
    assert.deepEqual(readFileSync(blob), target.content);
    assert.deepEqual(readFileSync(config), files.find((f) => f.path === "config.json")!.content);
    assert.deepEqual(
      hub
        .downloads(from)
        .map((q) => q.file)
        .sort(),
      ["config.json", "onnx/model_q4.onnx"],
    );
    assert.deepEqual(
      events
        .filter((e) => e.event === "refetch")
        .map((e) => (e as { path: string }).path)
        .sort(),
      ["config.json", "onnx/model_q4.onnx"],
    );
  });

  it("errors are one line saying what to do: 404, 401 and 403 (HF_TOKEN), no network, a missing dtype", async () => {
    const oneLine = async (p: Promise<unknown>, type: typeof InputError, pattern: RegExp) =>
      assert.rejects(p, (e: Error) => {
        assert.ok(e instanceof type, `${e.name}: ${e.message}`);
        assert.doesNotMatch(e.message, /\n/);
        assert.match(e.message, pattern);
        return true;
      });
    await oneLine(
      pull({ repo: "acme/nothing" }),
      InputError,
      /^acme\/nothing was not found on http:\/\/127\.0\.0\.1:\d+ \(404: Repository not found\): check the id/,
    );
    hub.missingIs401 = true;
    await oneLine(
      pull({ repo: "acme/nothing" }),
      InputError,
      /^acme\/nothing was not found on .* \(401: Repository not found\): check the id, or set HF_TOKEN if it is private$/,
    );
    hub.missingIs401 = false;
    await oneLine(pull({ revision: "v9" }), InputError, /^acme\/tiny@v9 was not found .*404/);
    await oneLine(
      pull({ repo: "acme/gated" }),
      InputError,
      /refused access to acme\/gated \(401: Access to model acme\/gated is restricted\. You must be authenticated to access it\.\): it is gated or private: .* set HF_TOKEN/,
    );
    await oneLine(
      pull({ repo: "acme/gated", token: "hf_wrong" }),
      InputError,
      /refused access to acme\/gated \(403: .*\): the access token from HF_TOKEN cannot read it/,
    );
    await oneLine(pull({ repo: "acme/gated", token: "nonsense" }), InputError, /HF_TOKEN does not hold a Hugging Face access token/);
    const closed = await closedPort();
    await oneLine(
      pull({ endpoint: `http://127.0.0.1:${closed}` }),
      InputError,
      /^cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): is there a network connection\?/,
    );
    await oneLine(pull({ dtype: "int8" }), UsageError, /^acme\/tiny has no int8 variant; it has fp32, fp16, q4 \(--dtype\)$/);
    assert.deepEqual(readdirSync(cache), []);
    const ok = await pull({ repo: "acme/gated", token: "hf_right" });
    assert.ok(existsSync(join(ok.snapshot, "onnx/model_q4.onnx")));
  });

  it("a full disk is exit 4's one line and keeps what it got; an unwritable cache says to set HF_HUB_CACHE", async function () {
    const disk = mountTinyDisk(64 * 1024);
    if (typeof disk === "string") return this.skip();
    try {
      await assert.rejects(pull({ cacheDir: disk.dir }), (e: Error) => {
        assert.ok(e instanceof DiskFullError, `${e.name}: ${e.message}`);
        assert.match(
          e.message,
          /^cannot write .* the disk holding .* is full; free some space there and run again \(what was downloaded is kept/,
        );
        return true;
      });
    } finally {
      disk.unmount();
    }
    const notAFolder = join(cache, "file");
    writeFileSync(notAFolder, "");
    await assert.rejects(pull({ cacheDir: notAFolder }), (e: Error) => {
      assert.ok(e instanceof InputError, `${e.name}: ${e.message}`);
      assert.match(e.message, /^cannot write the Hugging Face cache at .*file \(ENOTDIR on .*\): set HF_HUB_CACHE to a writable folder$/);
      return true;
    });
  });

  it("an id not in the cache names the pull command; list and rm", async () => {
    assert.throws(
      () => resolveModelArgument("acme/tiny"),
      (e: Error) => {
        assert.ok(e instanceof InputError);
        assert.equal(e.message, "acme/tiny is not downloaded (and no folder of that name exists): run twisted-smc models pull acme/tiny");
        return true;
      },
    );
    assert.throws(() => resolveModelArgument("acme/tiny@v2"), /run twisted-smc models pull acme\/tiny --revision v2$/);
    assert.equal(resolveModelArgument("not an id"), "not an id");
    await pull();
    const removed = removeCachedModel("acme/tiny", cache);
    assert.ok(removed && removed.bytes > 90000);
    assert.deepEqual(listCachedModels(cache), []);
    assert.equal(removeCachedModel("acme/tiny", cache), undefined);
  });
});
