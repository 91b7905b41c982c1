/**
 * A local stand-in for the Hugging Face Hub, for the hub*.test.ts tests: a node:http server on
 * 127.0.0.1 answering the requests @huggingface/hub makes (model info, the recursive tree listing,
 * `resolve` with ranges, ETag and X-Repo-Commit; LFS files redirected, as the Hub sends them to its
 * CDN) for fixture repositories built from the shipped model's files. It records every request and can break a download mid-file, send LFS files slowly, or gate a repository.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, IncomingMessage, Server, ServerResponse } from "node:http";
import { AddressInfo } from "node:net";
import { join } from "node:path";

export interface FixtureFile {
  path: string;
  content: Buffer;
  /** Stored with LFS: its etag is the sha256 of the content, else git's blob sha1. */
  lfs: boolean;
}

export interface FixtureRepo {
  id: string;
  commit: string;
  files: FixtureFile[];
  /** When set, every request must carry `Authorization: Bearer <token>` (401 without, 403 with another). */
  token?: string;
}

export interface Request {
  method: string;
  url: string;
  range?: string;
  authorization?: string;
  /** The repository file whose bytes this request was answered with, if any. */
  file?: string;
}

export const SHIPPED = join(__dirname, "../../models/tiny-math-llama");

export function etagOf(f: FixtureFile): string {
  if (f.lfs) return createHash("sha256").update(f.content).digest("hex");
  return createHash("sha1").update(`blob ${f.content.length}\0`).update(f.content).digest("hex");
}

const file = (path: string, content: Buffer | string, lfs = false): FixtureFile => ({
  path,
  content: Buffer.from(content),
  lfs,
});

/** Every file of a model folder as a Hub repository has it: ONNX files and anything over 10 MB in LFS, as the Hub keeps them. */
export function folderFiles(dir: string): FixtureFile[] {
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((p) => statSync(join(dir, p)).isFile())
    .map((p) => {
      const content = readFileSync(join(dir, p));
      return file(p, content, /\.onnx(_data)?$/.test(p) || content.length > 10_000_000);
    });
}

/** The shipped model's JSON files and fp32 graph, as a Hub repository has them. */
export function shippedModelFiles(): FixtureFile[] {
  const read = (p: string) => readFileSync(join(SHIPPED, p));
  return [
    file("config.json", read("config.json")),
    file("generation_config.json", read("generation_config.json")),
    file("tokenizer.json", read("tokenizer.json")),
    file("tokenizer_config.json", read("tokenizer_config.json")),
    file("onnx/model.onnx", read("onnx/model.onnx"), true),
  ];
}

/** A transformers.js-style repository: the shipped model plus fake variants (q4 with two data parts, fp16) and files no variant needs. */
export function variantRepoFiles(): FixtureFile[] {
  const fake = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) % 251));
  return [
    ...shippedModelFiles(),
    file("README.md", "# a fixture\n"),
    file("special_tokens_map.json", '{"eos_token": "</s>"}'),
    file("chat_template.jinja", "{{ messages[0].content }}"),
    file("model.safetensors", fake(5000, 1), true),
    file("onnx/model_q4.onnx", fake(3000, 2), true),
    file("onnx/model_q4.onnx_data", fake(70000, 3), true),
    file("onnx/model_q4.onnx_data_1", fake(20000, 4), true),
    file("onnx/model_fp16.onnx", fake(4000, 5), true),
    file("onnx/model_fp16.onnx_data", fake(9000, 6), true),
  ];
}

export class FakeHub {
  readonly repos = new Map<string, FixtureRepo>();
  readonly requests: Request[] = [];
  /** Breaks the next full download of this path after this many bytes (once). */
  dropOnce?: { path: string; afterBytes: number };
  /** Answer an unknown repository with 401 (as huggingface.co does without a token) instead of 404. */
  missingIs401 = false;
  /** Opt-in: send LFS file bodies at about this many bytes per second (0 or unset: at once), so that a client can be stopped mid-file. */
  throttleBytesPerSecond?: number;
  private server?: Server;
  endpoint = "";

  add(repo: FixtureRepo): this {
    this.repos.set(repo.id, repo);
    return this;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.endpoint;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  /** The file downloads (GET requests answered with a file's bytes, other than the 1-byte probes) since `from`. */
  downloads(from = 0): Request[] {
    return this.requests.slice(from).filter((r) => r.method === "GET" && r.file !== undefined && r.range !== "bytes=0-0");
  }

  private json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { "Content-Type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    const request: Request = {
      method: req.method ?? "GET",
      url: url.pathname + url.search,
      range: req.headers.range,
      authorization: req.headers.authorization,
    };
    this.requests.push(request);
    const cdn = /^\/cdn\/([^/]+\/[^/]+)\/([0-9a-f]{64})$/.exec(url.pathname);
    if (cdn) {
      const f = this.repos.get(cdn[1])?.files.find((x) => x.lfs && etagOf(x) === cdn[2]);
      if (!f) return this.json(res, 404, { error: "no such object" });
      return this.serve(req, res, request, f, { ETag: `"${etagOf(f)}"` });
    }
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)(?:\/(.*))?$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const id = api?.[1] ?? resolve?.[1];
    const repo = id === undefined ? undefined : this.repos.get(id);
    if (!repo) {
      // The real Hub says 401 to a request without a token for a repository it does not have (it might be private).
      const status = this.missingIs401 && !req.headers.authorization ? 401 : 404;
      return this.json(res, status, { error: "Repository not found" }, { "X-Error-Code": "RepoNotFound" });
    }
    if (repo.token) {
      const auth = req.headers.authorization;
      if (!auth) return this.json(res, 401, { error: `Access to model ${repo.id} is restricted. You must be authenticated to access it.` });
      if (auth !== `Bearer ${repo.token}`)
        return this.json(res, 403, { error: `Access to model ${repo.id} is restricted and you are not in the authorized list.` });
    }
    const rev = decodeURIComponent((api ?? resolve)![api ? 3 : 2]);
    if (rev !== "main" && rev !== "HEAD" && rev !== repo.commit) {
      return this.json(res, 404, { error: "Invalid rev id: " + rev }, { "X-Error-Code": "RevisionNotFound" });
    }
    if (api?.[2] === "revision") {
      return this.json(res, 200, {
        _id: "0".repeat(24),
        id: repo.id,
        sha: repo.commit,
        private: false,
        gated: repo.token ? "manual" : false,
        downloads: 0,
        likes: 0,
        lastModified: "2026-12-01T00:00:00.000Z",
        siblings: repo.files.map((f) => ({ rfilename: f.path })),
      });
    }
    if (api?.[2] === "tree") {
      const dirs = new Set(repo.files.flatMap((f) => (f.path.includes("/") ? [f.path.slice(0, f.path.lastIndexOf("/"))] : [])));
      return this.json(res, 200, [
        ...[...dirs].map((d) => ({ type: "directory", oid: "d".repeat(40), size: 0, path: d })),
        ...repo.files.map((f) => ({
          type: "file",
          oid: f.lfs ? createHash("sha1").update(f.path).digest("hex") : etagOf(f),
          size: f.content.length,
          path: f.path,
          ...(f.lfs && { lfs: { oid: etagOf(f), size: f.content.length, pointerSize: 134 } }),
        })),
      ]);
    }
    const f = repo.files.find((x) => x.path === resolve![3]);
    if (!f) return this.json(res, 404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound" });
    if (f.lfs) {
      res.writeHead(302, {
        Location: `${this.endpoint}/cdn/${repo.id}/${etagOf(f)}`,
        "X-Linked-Etag": `"${etagOf(f)}"`,
        "X-Linked-Size": String(f.content.length),
        "X-Repo-Commit": repo.commit,
      });
      return void res.end();
    }
    this.serve(req, res, request, f, { ETag: `"${etagOf(f)}"`, "X-Repo-Commit": repo.commit });
  }

  /** A file's bytes, all of them or the requested range; broken off once if dropOnce says so. */
  private serve(req: IncomingMessage, res: ServerResponse, request: Request, f: FixtureFile, extra: Record<string, string>): void {
    request.file = f.path;
    const headers: Record<string, string> = { "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", ...extra };
    const total = f.content.length;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    let body = f.content;
    if (range) {
      const start = Number(range[1]),
        end = range[2] ? Math.min(Number(range[2]), total - 1) : total - 1;
      body = f.content.subarray(start, end + 1);
      res.writeHead(206, { ...headers, "Content-Range": `bytes ${start}-${end}/${total}`, "Content-Length": String(body.length) });
    } else {
      res.writeHead(200, { ...headers, "Content-Length": String(total) });
    }
    if (req.method === "HEAD") return void res.end();
    const drop = this.dropOnce;
    if (drop && drop.path === f.path && !range) {
      this.dropOnce = undefined;
      res.write(body.subarray(0, drop.afterBytes), () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    if (f.lfs && this.throttleBytesPerSecond) return this.trickle(res, body, this.throttleBytesPerSecond);
    res.end(body);
  }

  /** Writes `body` in ten slices a second at `bytesPerSecond`; stops when the client goes away. */
  private trickle(res: ServerResponse, body: Buffer, bytesPerSecond: number): void {
    const slice = Math.max(1, Math.round(bytesPerSecond / 10));
    let sent = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      const next = body.subarray(sent, sent + slice);
      sent += next.length;
      if (sent >= body.length) {
        clearInterval(timer);
        res.end(next);
      } else res.write(next);
    }, 100);
    res.on("close", () => clearInterval(timer));
  }
}
