/**
 * The Hugging Face cache on disk, as Python's huggingface_hub and @huggingface/hub lay it out:
 * `$HF_HUB_CACHE` (else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`) / `models--{org}--{name}/`
 * with `blobs/<etag>`, `snapshots/<commit>/<path>` (relative symlinks into blobs) and `refs/<branch>`
 * (the commit hash). Read synchronously here: resolving a model argument happens before a model loads,
 * and listing or removing is a handful of directory reads.
 */
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { InputError } from "../util/errors";
import { DTYPES, Dtype, dtypeOfGraph } from "./variants";

/** The cache folder, with the environment variables in huggingface_hub's order. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  return join(home, "hub");
}

export interface RepoRef {
  /** org/name */
  repo: string;
  /** A branch, tag or commit hash; undefined for the default branch. */
  revision?: string;
}

const PART = "[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?";
const ID = new RegExp(`^(${PART}/${PART})(?:@([A-Za-z0-9._/-]+))?$`);
export const COMMIT_HASH = /^[0-9a-f]{40}$/;

/** `org/name` or `org/name@revision` as a RepoRef; undefined when `arg` is not shaped like a Hub id. */
export function parseRepoId(arg: string): RepoRef | undefined {
  const m = ID.exec(arg);
  if (!m || m[1].includes("..") || m[1].includes("--")) return undefined;
  return { repo: m[1], revision: m[2] };
}

export function repoFolder(repo: string, cacheDir = hubCacheDir()): string {
  return join(cacheDir, `models--${repo.split("/").join("--")}`);
}

/** The text a user types to fetch `ref`. */
export function pullCommand(ref: RepoRef): string {
  return `twisted-smc models pull ${ref.repo}${ref.revision ? ` --revision ${ref.revision}` : ""}`;
}

/** The snapshot folder of `ref` in the cache, or undefined when that revision is not there. */
export function cachedSnapshot(ref: RepoRef, cacheDir = hubCacheDir()): string | undefined {
  const folder = repoFolder(ref.repo, cacheDir);
  const revision = ref.revision ?? "main";
  let commit: string | undefined = COMMIT_HASH.test(revision) ? revision : undefined;
  if (!commit) {
    try {
      commit = readFileSync(join(folder, "refs", revision), "utf8").trim();
    } catch {
      return undefined;
    }
  }
  const snapshot = join(folder, "snapshots", commit);
  return existsSync(snapshot) ? snapshot : undefined;
}

/**
 * A model argument as a folder: an existing path as it is; else a Hub id (`org/name`, `org/name@rev`)
 * as its snapshot folder in the cache. An id that is not there is an InputError naming the pull command:
 * nothing is downloaded implicitly. Anything else is returned unchanged (the folder check reports it).
 */
export function resolveModelArgument(arg: string): string {
  if (existsSync(arg)) return arg;
  const ref = parseRepoId(arg);
  if (!ref) return arg;
  const snapshot = cachedSnapshot(ref);
  if (snapshot) return snapshot;
  throw new InputError(`${arg} is not downloaded (and no folder of that name exists): run ${pullCommand(ref)}`);
}

/**
 * The Hub id of a snapshot folder of the cache (`…/models--org--name/snapshots/COMMIT` → `org/name`),
 * so that a model run from the cache is named as the user named it; undefined for any other folder.
 */
export function hubIdOfFolder(dir: string): string | undefined {
  const m = /(?:^|[/\\])models--([^-/\\][^/\\]*?)--([^/\\]+)[/\\]snapshots[/\\][^/\\]+[/\\]?$/.exec(dir);
  return m ? `${m[1]}/${m[2]}` : undefined;
}

export interface CachedRevision {
  repo: string;
  commit: string;
  /** The refs (branches, tags) naming this commit. */
  refs: string[];
  /** The ONNX dtypes whose graph is in the snapshot. */
  variants: Dtype[];
  /** Bytes of the blobs this snapshot's files point to. */
  bytes: number;
  path: string;
}

export interface CachedRepo {
  repo: string;
  path: string;
  /** Bytes of everything under blobs/ (all revisions, unfinished downloads included). */
  bytes: number;
  revisions: CachedRevision[];
}

/** Files under `dir`, recursively, as paths relative to it with `/` separators. */
function walk(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...walk(join(dir, e.name), `${prefix}${e.name}/`));
    else out.push(prefix + e.name);
  }
  return out;
}

function folderBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  return walk(dir).reduce((sum, f) => sum + lstatSync(join(dir, f)).size, 0);
}

function scanRepo(path: string, repo: string): CachedRepo {
  const refsByCommit = new Map<string, string[]>();
  const refsDir = join(path, "refs");
  if (existsSync(refsDir)) {
    for (const ref of walk(refsDir)) {
      const commit = readFileSync(join(refsDir, ref), "utf8").trim();
      refsByCommit.set(commit, [...(refsByCommit.get(commit) ?? []), ref]);
    }
  }
  const snapshots = join(path, "snapshots");
  const revisions: CachedRevision[] = [];
  for (const commit of existsSync(snapshots) ? readdirSync(snapshots) : []) {
    const dir = join(snapshots, commit);
    if (!statSync(dir).isDirectory()) continue;
    const files = walk(dir);
    const blobs = new Map<string, number>();
    for (const f of files) {
      try {
        const real = realpathSync(join(dir, f));
        blobs.set(real, statSync(real).size);
      } catch {
        // a dangling link: its blob was removed
      }
    }
    const present = new Set(files.map(dtypeOfGraph));
    revisions.push({
      repo,
      commit,
      refs: refsByCommit.get(commit) ?? [],
      variants: DTYPES.filter((d) => present.has(d)),
      bytes: [...blobs.values()].reduce((a, b) => a + b, 0),
      path: dir,
    });
  }
  return { repo, path, bytes: folderBytes(join(path, "blobs")), revisions };
}

/** The models in the cache, sorted by id. */
export function listCachedModels(cacheDir = hubCacheDir()): CachedRepo[] {
  if (!existsSync(cacheDir)) return [];
  const repos: CachedRepo[] = [];
  for (const name of readdirSync(cacheDir).sort()) {
    const m = /^models--([^-].*?)--(.+)$/.exec(name);
    if (!m || !statSync(join(cacheDir, name)).isDirectory()) continue;
    repos.push(scanRepo(join(cacheDir, name), `${m[1]}/${m[2]}`));
  }
  return repos;
}

/** Removes a model's folder from the cache; returns it as it was, or undefined when it was not there. */
export function removeCachedModel(repo: string, cacheDir = hubCacheDir()): CachedRepo | undefined {
  const path = repoFolder(repo, cacheDir);
  if (!existsSync(path)) return undefined;
  const before = scanRepo(path, repo);
  before.bytes = folderBytes(path);
  rmSync(path, { recursive: true, force: true });
  return before;
}
