/**
 * Upkeep of the prepared-graph cache: CACHE/prepared/FOLDER-HASH/ holds, for one source file, its
 * prepared copies NAME….smc.onnx, each with its NAME….smc.json stamp (lm/onnx/prepareGraph.ts writes
 * them; TWISTED_SMC_CACHE_DIR). Nothing else ever removes them, so after a load that wrote a new one
 * (loadModel), evictPrepared removes
 * - entries that can never be used again: their source file is gone or changed, or a graph or its stamp
 *   is missing (a write cut short), and temp files of writers that no longer run;
 * - entries unused for UNUSED_MS (30 days);
 * - then the least recently used, while the cache is over its budget (TWISTED_SMC_PREPARED_CACHE_MB).
 *
 * "Last used" is the newest modification time of an entry's files (access times are not kept on many
 * mounts): markPrepared sets it to now on every file of a source's entries, and prepareForSmc's checks
 * read only the stamp and the graph's size, never its time. Another engine may be about to open an
 * entry, or reopen it (a GPU session reopened to free memory): a load marks its source's entries before
 * it opens them, a running engine marks them again every HEARTBEAT_MS, and nothing marked within
 * IN_USE_MS (10 minutes) is removed. Eviction is best effort: a file it cannot stat or remove is left.
 */
import { readdirSync, readFileSync, rmdirSync, rmSync, statSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { cacheDirFromEnv } from "../environment";
import { preparedDir } from "./onnx/prepareGraph";
import { isProcessAlive } from "../util/processAlive";

/** An entry marked this recently may be in use by an engine: never removed. */
export const IN_USE_MS = 10 * 60_000;
/** How often a running engine marks the entries of the models it holds. */
export const HEARTBEAT_MS = 3 * 60_000;
/** An entry not used for this long is removed. */
export const UNUSED_MS = 30 * 24 * 3600_000;

export type EvictionReason = "source gone" | "source changed" | "incomplete" | "leftover" | "unused" | "over budget";

export interface EvictOptions {
  /** Bytes the cache is kept under. */
  budgetBytes: number;
  unusedMs?: number;
  inUseMs?: number;
  now?: number;
}

export interface Removed {
  /** The entry's files, absolute. */
  paths: string[];
  bytes: number;
  reason: EvictionReason;
}

interface Entry {
  paths: string[];
  bytes: number;
  lastUsed: number;
  stale?: EvictionReason;
}

const GRAPH = ".smc.onnx";
const STAMP = ".smc.json";
/** writeFileAtomic's temp files: .NAME.PID.MILLISECONDS.tmp */
const TEMP = /^\..+\.(\d+)\.\d+\.tmp$/;

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function stat(path: string): { size: number; mtimeMs: number } | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** Why an entry's stamp says it can never be used again, if it does. */
function staleSource(stampPath: string): EvictionReason | undefined {
  let source: { path?: unknown; size?: unknown; mtimeMs?: unknown } | undefined;
  try {
    source = JSON.parse(readFileSync(stampPath, "utf8")).source;
  } catch {
    return "incomplete";
  }
  if (!source || typeof source.path !== "string") return "incomplete";
  const st = stat(source.path);
  if (!st) return "source gone";
  return st.size !== source.size || Math.round(st.mtimeMs) !== source.mtimeMs ? "source changed" : undefined;
}

/** The entries of one source's folder: graph and stamp by name, and temp files, each on its own. */
function entriesIn(dir: string): Entry[] {
  const byBase = new Map<string, string[]>();
  const out: Entry[] = [];
  for (const name of list(dir)) {
    const path = join(dir, name);
    const temp = TEMP.exec(name);
    if (temp) {
      const st = stat(path);
      const pid = Number(temp[1]);
      // A live writer's temp file is its write in progress.
      if (st && pid !== process.pid && !isProcessAlive(pid))
        out.push({ paths: [path], bytes: st.size, lastUsed: st.mtimeMs, stale: "leftover" });
      continue;
    }
    const base = name.endsWith(GRAPH) ? name.slice(0, -GRAPH.length) : name.endsWith(STAMP) ? name.slice(0, -STAMP.length) : undefined;
    if (base === undefined) continue; // not ours: left alone
    byBase.set(base, [...(byBase.get(base) ?? []), path]);
  }
  for (const [base, paths] of byBase) {
    const stats = paths.map(stat);
    if (stats.some((s) => !s)) continue; // removed meanwhile
    const entry: Entry = {
      paths,
      bytes: stats.reduce((sum, s) => sum + s!.size, 0),
      lastUsed: Math.max(...stats.map((s) => s!.mtimeMs)),
    };
    entry.stale = paths.length < 2 ? "incomplete" : staleSource(join(dir, base + STAMP));
    out.push(entry);
  }
  return out;
}

/** Removes an entry unless it was marked since it was read (another engine took it up). */
function removeEntry(e: Entry, inUseBefore: number): boolean {
  if (e.paths.some((p) => (stat(p)?.mtimeMs ?? 0) >= inUseBefore)) return false;
  // The graph first: a stamp without its graph reads as a miss, never as a graph to open.
  const ordered = [...e.paths].sort((a, b) => Number(b.endsWith(GRAPH)) - Number(a.endsWith(GRAPH)));
  for (const p of ordered) {
    try {
      rmSync(p, { force: true });
    } catch {
      return false; // held open where that forbids removal (Windows), or no permission: kept
    }
  }
  return true;
}

/**
 * Removes stale and long-unused prepared graphs from `cacheDir`, then the least recently used until the
 * rest fit `budgetBytes`; never one marked within `inUseMs`. Returns what it removed.
 */
export function evictPrepared(cacheDir: string, options: EvictOptions): Removed[] {
  const now = options.now ?? Date.now();
  const inUseBefore = now - (options.inUseMs ?? IN_USE_MS);
  const unusedBefore = now - (options.unusedMs ?? UNUSED_MS);
  const root = join(cacheDir, "prepared");
  const folders = list(root).map((name) => join(root, name));
  const entries = folders.flatMap(entriesIn);
  const removed: Removed[] = [];
  const remove = (e: Entry, reason: EvictionReason) => {
    if (e.lastUsed >= inUseBefore || !removeEntry(e, inUseBefore)) return false;
    removed.push({ paths: e.paths, bytes: e.bytes, reason });
    return true;
  };
  const kept: Entry[] = [];
  for (const e of entries) {
    const reason = e.stale ?? (e.lastUsed < unusedBefore ? "unused" : undefined);
    if (!reason || !remove(e, reason)) kept.push(e);
  }
  let total = kept.reduce((sum, e) => sum + e.bytes, 0);
  for (const e of [...kept].sort((a, b) => a.lastUsed - b.lastUsed)) {
    if (total <= options.budgetBytes) break;
    if (remove(e, "over budget")) total -= e.bytes;
  }
  // Folders left empty, once nothing was written into them for a while (a writer makes the folder first).
  for (const dir of folders) {
    const st = stat(dir);
    if (st && st.mtimeMs < inUseBefore && list(dir).length === 0) {
      try {
        rmdirSync(dir);
      } catch {
        // written into meanwhile, or not ours to remove
      }
    }
  }
  return removed;
}

/** Marks every prepared graph of `onnxPath` as used at `now` (best effort: a read-only cache is left as it is). */
export function markPrepared(onnxPath: string, cacheDir: string = cacheDirFromEnv(), now = Date.now()): void {
  const dir = preparedDir(onnxPath, cacheDir);
  const time = new Date(now);
  for (const name of list(dir)) {
    if (!name.endsWith(GRAPH) && !name.endsWith(STAMP)) continue;
    try {
      utimesSync(join(dir, name), time, time);
    } catch {
      // gone meanwhile, or not ours to touch
    }
  }
}

/**
 * Whether anything of `onnxPath`'s prepared graphs was written after `since` (ms), when markPrepared
 * set their times (to the millisecond; the file system may keep a fraction more or less).
 */
export function preparedSince(onnxPath: string, since: number, cacheDir: string = cacheDirFromEnv()): boolean {
  const dir = preparedDir(onnxPath, cacheDir);
  return list(dir).some((name) => (stat(join(dir, name))?.mtimeMs ?? 0) > since + 1);
}

const held = new Map<string, string>();
let heartbeat: NodeJS.Timeout | undefined;

/**
 * Keeps `onnxPath`'s prepared graphs marked as used for as long as this process runs (every
 * HEARTBEAT_MS, on a timer that never keeps the process alive), so another engine never removes a
 * graph this one may reopen.
 */
export function holdPrepared(onnxPath: string, cacheDir: string = cacheDirFromEnv()): void {
  held.set(`${cacheDir}\0${onnxPath}`, onnxPath);
  if (heartbeat) return;
  heartbeat = setInterval(() => {
    for (const [key, path] of held) markPrepared(path, key.slice(0, key.indexOf("\0")));
  }, HEARTBEAT_MS);
  heartbeat.unref();
}
