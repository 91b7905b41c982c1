/**
 * llama.cpp's llama-server serving the shipped model, for the tests of the remote proposal backend
 * (issue 20): the model converted to GGUF by the committed recipe (scripts/llama-server/convert.sh),
 * the server run from the Debian unstable root scripts/llama-server/setup.sh builds, on a free port of
 * 127.0.0.1, healthy before the suite starts and stopped after it.
 *
 * Without the root (or as a user who cannot chroot) a suite skips, unless
 * TWISTED_SMC_REQUIRE_LLAMA_SERVER=1: then it fails. LLAMA_SERVER_ROOT names another root.
 */
import { ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { MODEL_DIR } from "./helpers";

const REQUIRED = process.env.TWISTED_SMC_REQUIRE_LLAMA_SERVER === "1";
const SCRIPTS = join(__dirname, "../../scripts/llama-server");
const ROOT = process.env.LLAMA_SERVER_ROOT ?? join(homedir(), ".cache/twisted-smc/llama-server-sid");

/** Why llama-server cannot run here, or undefined when it can. */
export function llamaServerMissing(): string | undefined {
  if (!existsSync(join(ROOT, ".twisted-smc-ready"))) return `no llama-server root at ${ROOT} (run scripts/llama-server/setup.sh)`;
  if (process.getuid?.() !== 0) return "llama-server runs in its root via chroot, which needs root";
  return undefined;
}

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

export interface LlamaServer {
  /** http://127.0.0.1:PORT */
  base: string;
  /** The server's process (serve.sh execs down to llama-server: its id is the server's own). */
  process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Skips the calling suite (`ctx` is mocha's `this` in a `before`) when llama-server cannot run here,
 * else converts the shipped model and starts the server, resolving once GET /health answers 200.
 */
export async function startLlamaServer(ctx: Mocha.Context, extraArgs: string[] = []): Promise<LlamaServer> {
  const why = llamaServerMissing();
  if (why) {
    if (REQUIRED) throw new Error(`TWISTED_SMC_REQUIRE_LLAMA_SERVER=1 but ${why}`);
    console.log(`      skipped: ${why}`);
    ctx.skip();
  }
  const work = mkdtempSync(join(tmpdir(), "llama-server-test-"));
  let server: ChildProcess | undefined;
  const stop = async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server!.once("exit", resolve));
      server.kill("SIGTERM");
      const kill = setTimeout(() => server!.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(kill);
    }
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const gguf = join(work, "tiny-math-llama.gguf");
    await promisify(execFile)("bash", [join(SCRIPTS, "convert.sh"), MODEL_DIR, gguf]);
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    server = spawn("bash", [join(SCRIPTS, "serve.sh"), gguf, String(port), ...extraArgs], { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    const keep = (chunk: Buffer) => void (log = (log + chunk.toString()).slice(-4000));
    server.stdout!.on("data", keep);
    server.stderr!.on("data", keep);
    const exited = new Promise<string>((resolve) => server!.once("exit", (code, signal) => resolve(`exited (${code ?? signal})`)));
    const deadline = Date.now() + 30000;
    for (;;) {
      const up = await fetch(`${base}/health`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (up) break;
      const ended = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(r, 100))]);
      if (ended || Date.now() > deadline) throw new Error(`llama-server ${ended ?? "not healthy after 30 s"}:\n${log}`);
    }
    return { base, process: server, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
