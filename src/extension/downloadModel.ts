/**
 * Twisted SMC: Download Model… — pick a Hub model (a short list that suits math, or any `org/name`),
 * pick one of its ONNX variants by size, download it into the Hugging Face cache with a cancellable
 * progress notification, and make it the model in use. The extension does not import the engine: it
 * runs the CLI (`models info --json`, `models pull --progress json`) as a child process, as tasks.ts does.
 * An access token the user enters goes to the editor's secret storage and to the child as HF_TOKEN only.
 */
import { ChildProcess, spawn } from "node:child_process";
import * as vscode from "vscode";
import type { CommandTable } from "./commandTable";
import { SECTION } from "./config";

export const DOWNLOAD_MODEL_COMMAND = "twistedSmc.downloadModel";
const TOKEN_SECRET = "twistedSmc.huggingFaceToken";

/** Models that suit math word problems and have ONNX exports the engine runs. */
export const SUGGESTED_MODELS: readonly { id: string; detail: string }[] = [
  { id: "onnx-community/Qwen2.5-Math-1.5B-Instruct", detail: "Qwen2.5-Math 1.5B: tuned for math, step by step" },
  { id: "onnx-community/Qwen2.5-0.5B-Instruct", detail: "Qwen2.5 0.5B: small and quick" },
  { id: "onnx-community/Qwen3-0.6B-ONNX", detail: "Qwen3 0.6B: small, reasons before answering" },
  { id: "onnx-community/Llama-3.2-1B-Instruct", detail: "Llama 3.2 1B Instruct" },
  { id: "onnx-community/gemma-3-1b-it-ONNX", detail: "Gemma 3 1B (gated: accept its terms on the Hub, then enter a token)" },
  { id: "HuggingFaceTB/SmolLM2-360M-Instruct", detail: "SmolLM2 360M: the smallest" },
];

/** A Hub model id as the CLI takes it: org/name, optionally @revision. */
export const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*(@[\w./-]+)?$/;

interface Variant {
  dtype: string;
  graph: string;
  files: number;
  bytes: number;
}
interface RepoVariants {
  repo: string;
  commit: string;
  auto?: string;
  variants: Variant[];
}
export interface Downloaded {
  repo: string;
  dtype: string;
  snapshot: string;
  downloaded: number;
}

export function formatBytes(n: number): string {
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(0)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** A CLI run that failed: its one-line message (without the `twisted-smc: ` prefix). */
class CliError extends Error {
  constructor(
    message: string,
    readonly cancelled = false,
  ) {
    super(message);
  }
}

/** Runs the CLI with the editor's runtime; each stdout line goes to onLine; rejects with its last stderr line. */
function runCli(
  cli: string,
  args: string[],
  token: string | undefined,
  onLine: (line: string) => void,
  cancel?: vscode.CancellationToken,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, ELECTRON_RUN_AS_NODE: "1" };
    if (token) env.HF_TOKEN = token;
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [cli, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      return reject(new CliError(`could not start the command line tool: ${(e as Error).message}`));
    }
    let cancelled = false;
    const sub = cancel?.onCancellationRequested(() => {
      cancelled = true;
      child.kill("SIGTERM");
    });
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      let nl: number;
      while ((nl = out.indexOf("\n")) >= 0) {
        onLine(out.slice(0, nl));
        out = out.slice(nl + 1);
      }
    });
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", (e) => {
      sub?.dispose();
      reject(new CliError(`could not start the command line tool: ${e.message}`));
    });
    child.on("close", (code) => {
      sub?.dispose();
      if (out) onLine(out);
      if (cancelled) return reject(new CliError("cancelled", true));
      if (code === 0) return resolve();
      const lines = err.trim().split("\n");
      const said = lines.reverse().find((l) => l.startsWith("twisted-smc: ")) ?? lines[0] ?? `exit code ${code}`;
      reject(new CliError(said.replace(/^twisted-smc: /, "")));
    });
  });
}

/** The Hub the CLI talks to (HF_ENDPOINT, as the child inherits it). */
const hubAddress = () => (process.env.HF_ENDPOINT || "https://huggingface.co").replace(/\/+$/, "");

/** What the CLI said means the Hub refused access (a gated or private model, or a token it does not take). */
const isRefused = (message: string) => /\((401|403): |refused access|HF_TOKEN does not hold/.test(message);

export function downloadCommands(context: vscode.ExtensionContext): CommandTable {
  const cli = vscode.Uri.joinPath(context.extensionUri, "dist", "cli.js").fsPath;
  const secretToken = async () => (await context.secrets.get(TOKEN_SECRET)) || undefined;

  /** Asks for an access token and keeps it in secret storage; false when the user backs out. */
  const enterToken = async (repo: string): Promise<boolean> => {
    const token = await vscode.window.showInputBox({
      title: `Hugging Face access token for ${repo}`,
      prompt:
        "A read token of an account that has accepted the model's conditions (huggingface.co/settings/tokens). Kept in the editor's secret storage.",
      password: true,
      ignoreFocusOut: true,
      validateInput: (v) => (/^hf_\w{8,}$/.test(v.trim()) ? undefined : "Hugging Face access tokens start with hf_"),
    });
    if (!token) return false;
    await context.secrets.store(TOKEN_SECRET, token.trim());
    return true;
  };

  /** Runs `fn` with the stored token; on a refusal offers to enter one and runs it again. Errors are shown in one line. */
  const withToken = async <T>(repo: string, fn: (token: string | undefined) => Thenable<T>, onCancel?: string): Promise<T | undefined> => {
    for (;;) {
      try {
        return await fn(await secretToken());
      } catch (e) {
        const err = e as CliError;
        if (err.cancelled) {
          if (onCancel) void vscode.window.showInformationMessage(onCancel);
          return undefined;
        }
        if (isRefused(err.message)) {
          const pick = await vscode.window.showErrorMessage(
            `Twisted SMC: ${err.message.replace(/set HF_TOKEN to/g, "enter")}`,
            "Enter Token…",
            "Open Model Page",
          );
          if (pick === "Open Model Page") void vscode.env.openExternal(vscode.Uri.parse(`${hubAddress()}/${repo.split("@")[0]}`));
          if (pick === "Enter Token…" && (await enterToken(repo))) continue;
          return undefined;
        }
        void vscode.window.showErrorMessage(`Twisted SMC: ${err.message}`);
        return undefined;
      }
    }
  };

  const info = (repo: string) =>
    withToken(repo, (token) =>
      vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `Twisted SMC: looking up ${repo}…`, cancellable: true },
        async (_p, cancel) => {
          let json = "";
          await runCli(cli, ["models", "info", repo, "--json"], token, (l) => (json += l + "\n"), cancel);
          return JSON.parse(json) as RepoVariants;
        },
      ),
    );

  const pull = (repo: string, dtype: string) =>
    withToken(
      repo,
      (token) =>
        vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: `Twisted SMC: downloading ${repo} (${dtype})`, cancellable: true },
          async (progress, cancel) => {
            let total = 0;
            let finished = 0;
            let shown = 0;
            let result: Downloaded | undefined;
            const report = (done: number, message: string) => {
              const pct = total > 0 ? (100 * done) / total : 0;
              progress.report({ message, increment: Math.max(0, pct - shown) });
              shown = Math.max(shown, pct);
            };
            await runCli(
              cli,
              ["models", "pull", repo, "--dtype", dtype, "--progress", "json"],
              token,
              (line) => {
                let e: { event?: string; bytes?: number; done?: number; total?: number; seconds?: number; path?: string };
                try {
                  e = JSON.parse(line);
                } catch {
                  return;
                }
                if (e.event === "start") {
                  total = e.bytes ?? 0;
                  report(0, `${formatBytes(total)} to fetch`);
                } else if (e.event === "cached" || e.event === "downloaded") {
                  finished += e.bytes ?? 0;
                  report(finished, `${formatBytes(finished)} of ${formatBytes(total)}`);
                } else if (e.event === "progress") {
                  const rate = e.seconds ? `, ${formatBytes((e.done ?? 0) / e.seconds)}/s` : "";
                  report(finished + (e.done ?? 0), `${formatBytes(finished + (e.done ?? 0))} of ${formatBytes(total)}${rate}`);
                } else if (e.event === "done") {
                  result = e as unknown as Downloaded;
                }
              },
              cancel,
            );
            if (!result) throw new CliError("the command line tool finished without saying what it downloaded");
            return result;
          },
        ),
      `Twisted SMC: download of ${repo} cancelled; what was downloaded is kept, and downloading it again resumes there.`,
    );

  const pickRepo = async (): Promise<string | undefined> => {
    const other = "$(edit) Another Hub id…";
    const pick = await vscode.window.showQuickPick(
      [
        ...SUGGESTED_MODELS.map((m) => ({ label: m.id, description: "size shown after choosing", detail: m.detail })),
        { label: other, description: "any Hugging Face model with an ONNX export (org/name)" },
      ],
      { title: "Twisted SMC: Download Model", placeHolder: "A model for math word problems", matchOnDetail: true },
    );
    if (!pick) return undefined;
    if (pick.label !== other) return pick.label;
    const id = await vscode.window.showInputBox({
      title: "Twisted SMC: Hugging Face model id",
      placeHolder: "org/name (or org/name@revision)",
      validateInput: (v) => (HUB_ID.test(v.trim()) ? undefined : "A Hub model id is org/name, e.g. onnx-community/Qwen2.5-0.5B-Instruct"),
    });
    return id?.trim() || undefined;
  };

  const pickVariant = async (found: RepoVariants): Promise<string | undefined> => {
    if (found.variants.length === 0) {
      void vscode.window.showErrorMessage(
        `Twisted SMC: ${found.repo} has no ONNX decoder (onnx/model*.onnx); the engine runs ONNX exports: look for one under onnx-community.`,
      );
      return undefined;
    }
    const pick = await vscode.window.showQuickPick(
      // The one `--dtype auto` takes first, so Enter takes it.
      [...found.variants.filter((v) => v.dtype === found.auto), ...found.variants.filter((v) => v.dtype !== found.auto)].map((v) => ({
        label: v.dtype,
        description: `${formatBytes(v.bytes)}${v.dtype === found.auto ? " · suggested" : ""}`,
        detail: `${v.graph}, ${v.files} files`,
      })),
      {
        title: `Twisted SMC: which variant of ${found.repo}`,
        placeHolder: "Each size is what the download fetches; fp32 is the most exact",
      },
    );
    return pick?.label;
  };

  return {
    /** With arguments (tests, other commands) the picks are skipped. Returns what was downloaded, if anything. */
    [DOWNLOAD_MODEL_COMMAND]: async (repoArg?: string, dtypeArg?: string): Promise<Downloaded | undefined> => {
      const repo = typeof repoArg === "string" ? repoArg.trim() : await pickRepo();
      if (!repo) return undefined;
      if (!HUB_ID.test(repo)) return void vscode.window.showErrorMessage(`Twisted SMC: "${repo}" is not a Hub model id (org/name).`);
      let dtype = typeof dtypeArg === "string" ? dtypeArg : undefined;
      if (!dtype) {
        const found = await info(repo);
        dtype = found && (await pickVariant(found));
        if (!dtype) return undefined;
      }
      const result = await pull(repo, dtype);
      if (!result) return undefined;
      const cfg = vscode.workspace.getConfiguration(SECTION);
      await cfg.update("model", repo, vscode.ConfigurationTarget.Global);
      await cfg.update("modelVariant", result.dtype, vscode.ConfigurationTarget.Global);
      const fetched = result.downloaded > 0 ? `downloaded ${formatBytes(result.downloaded)}` : "already downloaded";
      const shadowed = ["model", "modelVariant"].some(
        (k) => cfg.inspect(k)?.workspaceValue !== undefined || cfg.inspect(k)?.workspaceFolderValue !== undefined,
      );
      void vscode.window.showInformationMessage(
        shadowed
          ? `Twisted SMC: ${repo} (${result.dtype}) ${fetched} and set in your user settings, but this workspace's twistedSmc.model or modelVariant setting overrides it.`
          : `Twisted SMC: ${repo} (${result.dtype}) ${fetched}; it is now the model in use.`,
      );
      return result;
    },
  };
}
