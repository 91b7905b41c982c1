/**
 * Downloads one ONNX variant of a Hub model into the Hugging Face cache with @huggingface/hub:
 * `modelInfo` resolves the revision to its commit, `listFiles` lists the repository (sizes, git and
 * LFS hashes), `downloadFile` gives each file as a Blob backed by ranged HTTP requests. The cache
 * entries are written here, in huggingface_hub's layout (blobs/<etag>, snapshots/<commit>/<path> as
 * relative symlinks, refs/<branch>), rather than with the library's downloadFileToCacheDir, which
 * neither reports progress, nor resumes a `.incomplete` blob, nor checks a cached file's size.
 *
 * Every finished blob is checked against its size and hash (sha256 for LFS files, the git blob hash
 * otherwise) before it is renamed into place, so the cache never holds a partial or corrupt file.
 */
import { createHash, Hash } from "node:crypto";
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { downloadFile, HubApiError, listFiles, modelInfo } from "@huggingface/hub";
import { DiskFullError, InputError } from "../util/errors";
import { UsageError } from "../util/options";
import { isProcessAlive } from "../util/processAlive";
import { COMMIT_HASH, hubCacheDir, repoFolder } from "./cache";
import { availableDtypes, Dtype, RepoFile, selectFiles } from "./variants";

export const DEFAULT_ENDPOINT = "https://huggingface.co";

export interface PullOptions {
  repo: string;
  revision?: string;
  dtype: Dtype | "auto";
  cacheDir?: string;
  /** The Hub's address (HF_ENDPOINT), default https://huggingface.co. */
  endpoint?: string;
  /** An access token (see hubToken): sent to the endpoint, never written or shown anywhere. */
  token?: string;
  /** Where the token came from, for messages: "HF_TOKEN" or the token file's path. */
  tokenSource?: string;
  onEvent?: (event: PullEvent) => void;
}

export type PullEvent =
  | { event: "start"; repo: string; commit: string; dtype: Dtype; files: number; bytes: number }
  | { event: "cached"; path: string; bytes: number }
  | { event: "refetch"; path: string; reason: string }
  | { event: "progress"; path: string; done: number; total: number; seconds: number }
  | { event: "downloaded"; path: string; bytes: number; resumedFrom: number; seconds: number };

export interface PullResult {
  repo: string;
  commit: string;
  dtype: Dtype;
  snapshot: string;
  files: string[];
  /** Bytes fetched by this run (0 when everything was cached). */
  downloaded: number;
}

interface ListedFile extends RepoFile {
  oid?: string;
  lfs?: { oid: string };
  xetHash?: string;
}

/**
 * The access token as huggingface_hub finds it: HF_TOKEN, else the file HF_TOKEN_PATH names, else
 * `$HF_HOME/token` (what `hf auth login` writes; HF_HOME defaults to ~/.cache/huggingface).
 */
export function hubToken(env: NodeJS.ProcessEnv = process.env): { token?: string; source?: string } {
  if (env.HF_TOKEN) return { token: env.HF_TOKEN.trim(), source: "HF_TOKEN" };
  const file = env.HF_TOKEN_PATH ?? join(env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface"), "token");
  try {
    const token = readFileSync(file, "utf8").trim();
    return token ? { token, source: file } : {};
  } catch {
    return {};
  }
}

/** The file being downloaded, for the message when it fails. */
interface Current {
  path: string;
  done: number;
  total: number;
  incomplete: string;
}

/** A request that never got an answer: no network, a refused connection, an unknown host. */
class NetworkError extends Error {}

export async function pullModel(options: PullOptions): Promise<PullResult> {
  const endpoint = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, "");
  const revision = options.revision ?? "main";
  const emit = options.onEvent ?? (() => undefined);
  const hub = { hubUrl: endpoint, accessToken: options.token || undefined, fetch: reportingFetch };
  const folder = repoFolder(options.repo, options.cacheDir ?? hubCacheDir());
  let current: Current | undefined;
  try {
    const { commit, listed } = await listRepo(options.repo, revision, endpoint, hub);
    const selection = selectFiles(listed, options.dtype);
    if ("missing" in selection) {
      if (selection.available.length === 0) {
        throw new InputError(
          `${options.repo} has no ONNX decoder (onnx/model*.onnx or model.onnx): this engine runs ONNX exports of a model`,
        );
      }
      throw new UsageError(`${options.repo} has no ${selection.missing} variant; it has ${selection.available.join(", ")} (--dtype)`);
    }
    const files = selection.files as ListedFile[];
    emit({
      event: "start",
      repo: options.repo,
      commit,
      dtype: selection.dtype,
      files: files.length,
      bytes: files.reduce((s, f) => s + f.size, 0),
    });
    const snapshot = join(folder, "snapshots", commit);
    let downloaded = 0;
    for (const file of files) {
      const etag = file.lfs?.oid ?? file.xetHash ?? file.oid;
      if (!etag || !/^[A-Za-z0-9]+$/.test(etag)) throw new InputError(`${endpoint} gave no hash for ${options.repo}/${file.path}`);
      const blob = join(folder, "blobs", etag);
      const pointer = join(snapshot, file.path);
      if (sizeOf(pointer) === file.size || sizeOf(blob) === file.size) {
        link(blob, pointer);
        emit({ event: "cached", path: file.path, bytes: file.size });
        continue;
      }
      if (existsSync(blob)) {
        emit({ event: "refetch", path: file.path, reason: `the cached copy has ${sizeOf(blob)} bytes, not ${file.size}` });
        rmSync(blob, { force: true });
      }
      current = { path: file.path, done: 0, total: file.size, incomplete: `${blob}.incomplete` };
      const release = lockBlob(folder, etag, file.path);
      try {
        downloaded += await fetchBlob(options.repo, commit, file, blob, hub, current, emit);
      } finally {
        release();
      }
      current = undefined;
      link(blob, pointer);
    }
    if (!COMMIT_HASH.test(revision)) {
      mkdirSync(dirname(join(folder, "refs", revision)), { recursive: true });
      writeFileSync(join(folder, "refs", revision), commit);
    }
    return { repo: options.repo, commit, dtype: selection.dtype, snapshot, files: files.map((f) => f.path), downloaded };
  } catch (e) {
    throw describeFailure(e, options, endpoint, folder, current);
  }
}

/** The commit a revision resolves to, and every file of the repository at it (recursive listing). */
async function listRepo(
  repo: string,
  revision: string,
  endpoint: string,
  hub: { hubUrl: string; accessToken?: string; fetch: typeof fetch },
): Promise<{ commit: string; listed: ListedFile[] }> {
  const info = await modelInfo({ name: repo, revision, additionalFields: ["sha"], ...hub });
  const commit = info.sha;
  if (!commit || !COMMIT_HASH.test(commit)) throw new InputError(`${endpoint} gave no commit for ${repo}@${revision}`);
  const listed: ListedFile[] = [];
  for await (const e of listFiles({ repo, revision: commit, recursive: true, ...hub })) {
    if (e.type === "file") listed.push(e);
  }
  return { commit, listed };
}

export interface RepoVariants {
  repo: string;
  commit: string;
  /** The dtype `--dtype auto` would take, if any. */
  auto?: Dtype;
  /** Each ONNX variant the repository has (DTYPES order): what a pull of it downloads, side files included. */
  variants: { dtype: Dtype; graph: string; files: number; bytes: number }[];
}

/** What `pull` could fetch of a repository, without fetching it: its ONNX variants and their sizes. */
export async function repoVariants(options: Omit<PullOptions, "dtype" | "onEvent">): Promise<RepoVariants> {
  const endpoint = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, "");
  const hub = { hubUrl: endpoint, accessToken: options.token || undefined, fetch: reportingFetch };
  try {
    const { commit, listed } = await listRepo(options.repo, options.revision ?? "main", endpoint, hub);
    const variants = availableDtypes(listed).flatMap((dtype) => {
      const s = selectFiles(listed, dtype);
      return "missing" in s ? [] : [{ dtype, graph: s.graph, files: s.files.length, bytes: s.files.reduce((n, f) => n + f.size, 0) }];
    });
    const auto = selectFiles(listed, "auto");
    return { repo: options.repo, commit, ...("missing" in auto ? {} : { auto: auto.dtype }), variants };
  } catch (e) {
    throw describeFailure(e, { ...options, dtype: "auto" }, endpoint, repoFolder(options.repo, options.cacheDir ?? hubCacheDir()));
  }
}

/** Global fetch, with a failure to connect turned into a NetworkError naming its cause. */
const reportingFetch: typeof fetch = (input, init) =>
  fetch(input, init).catch((e: unknown) => {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new NetworkError(cause?.code ?? cause?.message ?? (e as Error).message);
  });

function sizeOf(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
}

/** The snapshot entry as a relative symlink to its blob, as huggingface_hub makes it. */
function link(blob: string, pointer: string): void {
  mkdirSync(dirname(pointer), { recursive: true });
  rmSync(pointer, { force: true });
  symlinkSync(relative(dirname(pointer), blob), pointer);
}

/**
 * Claims the download of one blob, so that two pulls never append to the same `.incomplete` file:
 * `.locks/models--org--name/<etag>.twisted-smc.lock` (beside huggingface_hub's own lock files)
 * holding this process's id. A lock whose process is gone is taken over. Returns the release.
 */
function lockBlob(folder: string, etag: string, path: string): () => void {
  const lock = join(dirname(folder), ".locks", basename(folder), `${etag}.twisted-smc.lock`);
  mkdirSync(dirname(lock), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lock, String(process.pid), { flag: "wx" });
      return () => rmSync(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw e;
    }
    const pid = Number(readFileSync(lock, "utf8"));
    if (pid !== process.pid && isProcessAlive(pid)) {
      throw new InputError(`another process (pid ${pid}) is downloading ${path} into the cache: let it finish, then run this again`);
    }
    rmSync(lock, { force: true });
  }
}

/** The hash that names a file: sha256 of the content for LFS files, git's blob sha1 otherwise. */
function contentHash(file: ListedFile): { hash: Hash; expected: string } | undefined {
  if (file.lfs && /^[0-9a-f]{64}$/.test(file.lfs.oid)) return { hash: createHash("sha256"), expected: file.lfs.oid };
  if (!file.lfs && file.oid && /^[0-9a-f]{40}$/.test(file.oid)) {
    return { hash: createHash("sha1").update(`blob ${file.size}\0`), expected: file.oid };
  }
  return undefined;
}

/**
 * Downloads one file to `blob`: into `blob.incomplete`, continued from its end when an earlier run
 * left one (a ranged request), checked, then renamed. Returns the bytes fetched.
 */
async function fetchBlob(
  repo: string,
  commit: string,
  file: ListedFile,
  blob: string,
  hub: { hubUrl: string; accessToken?: string; fetch: typeof fetch },
  current: Current,
  emit: (event: PullEvent) => void,
  retried = false,
): Promise<number> {
  mkdirSync(dirname(blob), { recursive: true });
  const incomplete = `${blob}.incomplete`;
  let offset = sizeOf(incomplete) ?? 0;
  if (offset >= file.size) {
    rmSync(incomplete, { force: true });
    offset = 0;
  }
  const check = contentHash(file);
  if (check && offset > 0) {
    for await (const chunk of createReadStream(incomplete)) check.hash.update(chunk as Buffer);
  }
  const source = await downloadFile({ repo, path: file.path, revision: commit, xet: false, ...hub });
  if (!source) throw new InputError(`${repo} lists ${file.path} but does not serve it`);
  const started = performance.now();
  current.done = offset;
  let lastReport = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, done) {
      current.done += chunk.length;
      check?.hash.update(chunk);
      const now = performance.now();
      if (now - lastReport > 250) {
        lastReport = now;
        emit({ event: "progress", path: file.path, done: current.done, total: file.size, seconds: (now - started) / 1000 });
      }
      done(null, chunk);
    },
  });
  const body = (offset > 0 ? source.slice(offset) : source).stream() as unknown as NodeReadableStream;
  await pipeline(Readable.fromWeb(body), count, createWriteStream(incomplete, { flags: offset > 0 ? "a" : "w" }));
  const got = sizeOf(incomplete) ?? 0;
  const digest = check?.hash.digest("hex");
  if (got !== file.size || (check && digest !== check.expected)) {
    rmSync(incomplete, { force: true });
    // A resumed part may come from a different file once served under the same name: start over once.
    if (!retried && offset > 0) return fetchBlob(repo, commit, file, blob, hub, current, emit, true);
    const what = got !== file.size ? `${got} bytes instead of ${file.size}` : `content whose hash is not ${check!.expected}`;
    throw new InputError(`the download of ${repo}/${file.path} gave ${what}; nothing was kept: run the same command again`);
  }
  renameSync(incomplete, blob);
  const seconds = (performance.now() - started) / 1000;
  emit({ event: "downloaded", path: file.path, bytes: file.size, resumedFrom: offset, seconds });
  return file.size - offset;
}

/** Any failure as one line saying what to do: InputError (exit 3) or UsageError (exit 2). */
function describeFailure(e: unknown, options: PullOptions, endpoint: string, folder: string, current?: Current): unknown {
  if (e instanceof InputError || e instanceof DiskFullError) return e;
  const fsError = e as NodeJS.ErrnoException;
  // The cache, not the Hub: no room left (exit 4), or a folder this user cannot write.
  const full = DiskFullError.from(
    e,
    fsError.path ?? current?.incomplete ?? folder,
    "what was downloaded is kept: run the same command again to resume",
  );
  if (full instanceof DiskFullError) return full;
  if (typeof fsError.code === "string" && typeof fsError.syscall === "string" && typeof fsError.path === "string") {
    return new InputError(
      `cannot write the Hugging Face cache at ${dirname(folder)} (${fsError.code} on ${fsError.path}): set HF_HUB_CACHE to a writable folder`,
    );
  }
  const id = `${options.repo}${options.revision ? `@${options.revision}` : ""}`;
  if (e instanceof HubApiError) {
    const said = e.message.replace(/\. URL: .*$/s, "").replace(/\s+/g, " ");
    if (e.statusCode === 404) return new InputError(`${id} was not found on ${endpoint} (404: ${said}): check the id and the revision`);
    if (e.statusCode === 401 || e.statusCode === 403) {
      const fix = options.token
        ? `the access token from ${options.tokenSource ?? "HF_TOKEN"} cannot read it: accept the model's conditions on ${endpoint}/${options.repo} with that account, or set HF_TOKEN to another token`
        : `it is gated or private: accept its conditions on ${endpoint}/${options.repo} and set HF_TOKEN to an access token of that account`;
      // The Hub answers 401 for a repository that does not exist too, when no token is sent.
      if (!options.token && /not found/i.test(said)) {
        return new InputError(`${id} was not found on ${endpoint} (401: ${said}): check the id, or set HF_TOKEN if it is private`);
      }
      return new InputError(`${endpoint} refused access to ${id} (${e.statusCode}: ${said}): ${fix}`);
    }
    return new InputError(`${endpoint} answered ${e.statusCode} for ${id} (${said}): try again later`);
  }
  if (e instanceof TypeError && /access token must start with 'hf_'/.test(e.message)) {
    return new InputError(`${options.tokenSource ?? "HF_TOKEN"} does not hold a Hugging Face access token (they start with hf_)`);
  }
  if (e instanceof NetworkError) {
    return new InputError(`cannot reach ${endpoint} (${e.message}): is there a network connection? (HF_ENDPOINT names a mirror)`);
  }
  if (current) {
    const reason = e instanceof Error ? e.message : String(e);
    return new InputError(
      `the connection to ${endpoint} broke while downloading ${current.path} (after ${current.done} of ${current.total} bytes; ${reason}): run the same command again to resume`,
    );
  }
  return e;
}
