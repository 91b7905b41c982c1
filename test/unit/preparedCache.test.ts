/**
 * The prepared-graph cache's upkeep (lm/preparedCache.ts): what a load marks as used, and what a load
 * that wrote a new prepared graph removes — entries whose source is gone or changed, half-written ones,
 * dead writers' temp files, entries unused for 30 days, then the least recently used past the budget —
 * never an entry marked within the last minutes, which another engine may be opening.
 */
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PREPARED_CACHE_MB, preparedCacheMiBFromEnv } from "../../src/engine/environment";
import { loadModel } from "../../src/engine/lm/model/loadModel";
import { preparedDir } from "../../src/engine/lm/onnx/prepareGraph";
import { evictPrepared, IN_USE_MS, markPrepared, UNUSED_MS } from "../../src/engine/lm/preparedCache";
import { InputError } from "../../src/engine/util/errors";

const MINUTE = 60_000;
const GPT2 = join(__dirname, "../fixtures/gpt2-tiny");

describe("the prepared-graph cache's upkeep", function () {
  this.timeout(120000);
  const root = mkdtempSync(join(tmpdir(), "tsmc-prepared-cache-"));
  let n = 0;

  /** A source file and, in `cache`, one prepared entry of it (graph + stamp) last used `ageMs` ago. */
  function entry(cache: string, ageMs: number, o: { bytes?: number; name?: string; stamp?: boolean; now?: number } = {}) {
    const source = join(root, `src-${n++}`, "model.onnx");
    mkdirSync(join(source, ".."), { recursive: true });
    writeFileSync(source, "graph bytes");
    const st = statSync(source);
    const dir = preparedDir(source, cache);
    mkdirSync(dir, { recursive: true });
    const base = join(dir, o.name ?? "model.sampling");
    writeFileSync(`${base}.smc.onnx`, Buffer.alloc(o.bytes ?? 1000));
    const files = [`${base}.smc.onnx`];
    if (o.stamp !== false) {
      const stamp = { source: { version: 1, path: source, size: st.size, mtimeMs: Math.round(st.mtimeMs), sampleHash: "x" }, bytes: 1000 };
      writeFileSync(`${base}.smc.json`, JSON.stringify(stamp));
      files.push(`${base}.smc.json`);
    }
    const t = new Date((o.now ?? Date.now()) - ageMs);
    for (const f of files) utimesSync(f, t, t);
    return { source, dir, graph: files[0], files };
  }

  const names = (removed: { paths: string[]; reason: string }[]) => removed.map((r) => `${r.reason}:${r.paths.length}`).sort();

  it("removes entries whose source is gone or changed, and half-written ones, but not while they may be in use", () => {
    const cache = mkdtempSync(join(root, "cache-"));
    const gone = entry(cache, 60 * MINUTE);
    const goneInUse = entry(cache, 2 * MINUTE);
    const changed = entry(cache, 60 * MINUTE);
    const halfWritten = entry(cache, 60 * MINUTE, { stamp: false });
    const beingWritten = entry(cache, 0, { stamp: false });
    const fine = entry(cache, 60 * MINUTE);
    for (const e of [gone, goneInUse]) rmSync(e.source);
    writeFileSync(changed.source, "other graph bytes");
    const unknown = join(fine.dir, "README.txt");
    writeFileSync(unknown, "not ours");
    utimesSync(unknown, new Date(0), new Date(0));

    const removed = evictPrepared(cache, { budgetBytes: 1e12 });
    assert.deepEqual(names(removed), ["incomplete:1", "source changed:2", "source gone:2"]);
    for (const e of [gone, changed, halfWritten]) for (const f of e.files) assert.equal(existsSync(f), false, f);
    for (const e of [goneInUse, beingWritten, fine]) for (const f of e.files) assert.equal(existsSync(f), true, f);
    assert.equal(existsSync(unknown), true);
  });

  it("removes entries unused for 30 days, then the least recently used while over the budget", () => {
    const cache = mkdtempSync(join(root, "cache-"));
    const now = Date.now();
    const old = entry(cache, UNUSED_MS + MINUTE, { now });
    const a = entry(cache, 3 * 60 * MINUTE, { now, bytes: 1000 });
    const b = entry(cache, 2 * 60 * MINUTE, { now, bytes: 1000, name: "model.sampling.fused" });
    const c = entry(cache, 1 * 60 * MINUTE, { now, bytes: 1000 });
    const inUse = entry(cache, IN_USE_MS - MINUTE, { now, bytes: 1000 });
    const bytes = (e: { files: string[] }) => e.files.reduce((sum, f) => sum + statSync(f).size, 0);
    // Four entries of 1000 bytes and a stamp each: the budget fits the three most recently used.
    const bytesOfA = bytes(a);
    const removed = evictPrepared(cache, { budgetBytes: bytes(b) + bytes(c) + bytes(inUse), now });
    assert.deepEqual(
      removed.map((r) => [r.reason, r.paths.find((p) => p.endsWith(".onnx"))]),
      [
        ["unused", old.graph],
        ["over budget", a.graph],
      ],
    );
    assert.equal(removed[1].bytes, bytesOfA);
    for (const e of [b, c, inUse]) assert.equal(existsSync(e.graph), true);
    // A budget of 0 keeps only what may be in use.
    assert.deepEqual(names(evictPrepared(cache, { budgetBytes: 0, now })), ["over budget:2", "over budget:2"]);
    assert.equal(existsSync(inUse.graph), true);
    // The folders emptied go once nothing was written into them for a while.
    const folders = () => readdirSync(join(cache, "prepared")).length;
    assert.equal(folders(), 5);
    evictPrepared(cache, { budgetBytes: 0, now: now + IN_USE_MS + MINUTE, inUseMs: IN_USE_MS });
    assert.equal(folders(), 0);
  });

  it("removes dead writers' temp files, never a live writer's", () => {
    const cache = mkdtempSync(join(root, "cache-"));
    const e = entry(cache, 0);
    const dead = join(e.dir, ".model.sampling.smc.onnx.999999999.1.tmp");
    const live = join(e.dir, `.model.sampling.smc.onnx.${process.ppid}.1.tmp`);
    for (const f of [dead, live]) {
      writeFileSync(f, "partial");
      utimesSync(f, new Date(0), new Date(0));
    }
    assert.deepEqual(names(evictPrepared(cache, { budgetBytes: 1e12 })), ["leftover:1"]);
    assert.equal(existsSync(dead), false);
    assert.equal(existsSync(live), true);
  });

  it("marks a source's entries as used, and only its", () => {
    const cache = mkdtempSync(join(root, "cache-"));
    const mine = entry(cache, 60 * MINUTE);
    const other = entry(cache, 60 * MINUTE);
    const now = Date.now();
    markPrepared(mine.source, cache, now);
    for (const f of mine.files) assert.equal(Math.round(statSync(f).mtimeMs), now);
    for (const f of other.files) assert.ok(statSync(f).mtimeMs < now - 59 * MINUTE);
    assert.deepEqual(
      evictPrepared(cache, { budgetBytes: 0, now }).map((r) => r.paths.find((p) => p.endsWith(".onnx"))),
      [other.graph],
    );
    markPrepared(join(root, "no-such-model.onnx"), cache, now); // nothing to mark: no error
  });

  it("reads TWISTED_SMC_PREPARED_CACHE_MB: a number of MiB ≥ 0, 10 GiB by default", () => {
    assert.equal(PREPARED_CACHE_MB, 10240);
    assert.equal(preparedCacheMiBFromEnv({}), PREPARED_CACHE_MB);
    assert.equal(preparedCacheMiBFromEnv({ TWISTED_SMC_PREPARED_CACHE_MB: " " }), PREPARED_CACHE_MB);
    assert.equal(preparedCacheMiBFromEnv({ TWISTED_SMC_PREPARED_CACHE_MB: "0" }), 0);
    assert.equal(preparedCacheMiBFromEnv({ TWISTED_SMC_PREPARED_CACHE_MB: "512.5" }), 512.5);
    for (const bad of ["-1", "lots", "NaN"])
      assert.throws(
        () => preparedCacheMiBFromEnv({ TWISTED_SMC_PREPARED_CACHE_MB: bad }),
        (e: Error) => e instanceof InputError && e.message === `TWISTED_SMC_PREPARED_CACHE_MB must be a number of MiB ≥ 0, got ${bad}`,
      );
  });

  describe("when a model loads", () => {
    const saved = { dir: process.env.TWISTED_SMC_CACHE_DIR, mb: process.env.TWISTED_SMC_PREPARED_CACHE_MB };
    afterEach(() => {
      for (const [k, v] of [
        ["TWISTED_SMC_CACHE_DIR", saved.dir],
        ["TWISTED_SMC_PREPARED_CACHE_MB", saved.mb],
      ] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    });
    const load = async (dir: string) => (await loadModel(dir, { device: "cpu", threads: 1, sampleInGraph: true })).lm.dispose();

    it("writing a prepared graph evicts past the budget; reusing one marks it and evicts nothing", async () => {
      const cache = mkdtempSync(join(root, "cache-"));
      process.env.TWISTED_SMC_CACHE_DIR = cache;
      process.env.TWISTED_SMC_PREPARED_CACHE_MB = "0";
      const model = mkdtempSync(join(root, "gpt2-"));
      cpSync(GPT2, model, { recursive: true });
      const stale = entry(cache, 60 * MINUTE);
      const used = preparedDir(join(model, "model.onnx"), cache);

      await load(model); // writes model.sampling.smc.onnx: the stale entry goes, the new one (in use) stays
      assert.equal(existsSync(stale.graph), false);
      const written = readdirSync(used).filter((f) => f.endsWith(".smc.onnx"));
      assert.equal(written.length, 1);
      const graph = join(used, written[0]);

      // Reused an hour later: marked as used again, and nothing is evicted (nothing was written).
      const hourAgo = new Date(Date.now() - 60 * MINUTE);
      for (const f of readdirSync(used)) utimesSync(join(used, f), hourAgo, hourAgo);
      const second = entry(cache, 60 * MINUTE);
      const before = Date.now();
      await load(model);
      assert.ok(statSync(graph).mtimeMs >= before - 1000, "marked as used");
      assert.equal(existsSync(second.graph), true);
    });

    it("a bad TWISTED_SMC_PREPARED_CACHE_MB is refused before the model loads", async () => {
      process.env.TWISTED_SMC_CACHE_DIR = mkdtempSync(join(root, "cache-"));
      process.env.TWISTED_SMC_PREPARED_CACHE_MB = "-5";
      await assert.rejects(
        loadModel(GPT2, { device: "cpu", threads: 1 }),
        /TWISTED_SMC_PREPARED_CACHE_MB must be a number of MiB ≥ 0, got -5/,
      );
    });
  });
});
