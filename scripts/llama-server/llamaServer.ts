/**
 * llama.cpp's llama-server serving the shipped model, for the tests and the benchmark of the openai
 * backend: the model converted to GGUF once (convert.sh), then served on one port of 127.0.0.1 by
 * serve.sh, which can be killed and started again on the same port. No engine code is imported, so the
 * extension-host tests bundle it as they are.
 *
 * Without the root setup.sh builds (the tests' setup runs it as root), or as a user who cannot chroot,
 * `llamaServerMissing` says why.
 */
import { ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const ROOT = process.env.LLAMA_SERVER_ROOT ?? join(homedir(), ".cache/twisted-smc/llama-server-sid");

/** Why llama-server cannot run here, or undefined when it can. */
export function llamaServerMissing(): string | undefined {
  if (!existsSync(join(ROOT, ".twisted-smc-ready"))) return `no llama-server root at ${ROOT} (run scripts/llama-server/setup.sh)`;
  if (process.getuid?.() !== 0) return "llama-server runs in its root via chroot, which needs root";
  return undefined;
}

/** A port of 127.0.0.1 nothing listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

export class LlamaServer {
  private server?: ChildProcess;
  private log = "";

  private constructor(
    private readonly scripts: string,
    private readonly work: string,
    private readonly gguf: string,
    readonly port: number,
    private readonly extraArgs: string[],
  ) {}

  /** http://127.0.0.1:PORT */
  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Converts the shipped model of the repository at `repo` and starts serving it. */
  static async start(repo: string, extraArgs: string[] = []): Promise<LlamaServer> {
    const scripts = join(repo, "scripts/llama-server");
    const work = mkdtempSync(join(tmpdir(), "llama-server-e2e-"));
    const gguf = join(work, "tiny-math-llama.gguf");
    const server = new LlamaServer(scripts, work, gguf, await freePort(), extraArgs);
    try {
      await promisify(execFile)("bash", [join(scripts, "convert.sh"), join(repo, "models/tiny-math-llama"), gguf]);
      await server.restart();
      return server;
    } catch (e) {
      await server.close();
      throw e;
    }
  }

  /** Starts the server (again) on its port; resolves once GET /health answers 200. */
  async restart(): Promise<void> {
    const proc = spawn("bash", [join(this.scripts, "serve.sh"), this.gguf, String(this.port), ...this.extraArgs], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.server = proc;
    const keep = (chunk: Buffer) => void (this.log = (this.log + chunk.toString()).slice(-4000));
    proc.stdout!.on("data", keep);
    proc.stderr!.on("data", keep);
    const exited = new Promise<string>((resolve) => proc.once("exit", (code, signal) => resolve(`exited (${code ?? signal})`)));
    const deadline = Date.now() + 30000;
    for (;;) {
      const up = await fetch(`${this.base}/health`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (up) return;
      const ended = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(r, 100))]);
      if (ended || Date.now() > deadline) throw new Error(`llama-server ${ended ?? "not healthy after 30 s"}:\n${this.log}`);
    }
  }

  /** Stops the server: SIGKILL (a crash, as the engine sees it) or SIGTERM; resolves once it has exited. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const proc = this.server;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill(signal);
    const kill = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(kill);
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.work, { recursive: true, force: true });
  }
}
