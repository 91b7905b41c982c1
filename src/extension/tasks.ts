/**
 * Training and evaluation as VS Code tasks of type `twisted-smc`: a task's definition carries the
 * trainer's flags by the seed's names, so tasks.json entries work. The task runs the CLI in its own
 * process (a long training run never blocks solving), shows progress in the terminal, feeds the panel's
 * loss curve, and on Terminate stops after the batch in progress, keeping the last checkpoint.
 */
import { ChildProcess, spawn } from "node:child_process";
import * as vscode from "vscode";
import type { TrainPoint } from "../protocol/panelMessages";
import { FINISH_PART_NAMES, finishProgressText, heldOutLine, parseTrainProgressLine } from "../protocol/training";
import type { CommandTable } from "./commandTable";
import { modelSettings } from "./config";
import { taskArgs, TASK_TYPE, TRAINING_PRESETS, TwistedSmcTaskDefinition } from "./taskArgs";

export { TASK_TYPE };

const line = (s: string) => s.replace(/\n/g, "\r\n") + "\r\n";

/** The terminal of one task run: the CLI as a child process, its JSON progress turned into lines. */
class CliTerminal implements vscode.Pseudoterminal {
  private readonly writeEmitter = new vscode.EventEmitter<string>();
  private readonly closeEmitter = new vscode.EventEmitter<number>();
  readonly onDidWrite = this.writeEmitter.event;
  readonly onDidClose = this.closeEmitter.event;
  private child?: ChildProcess;

  constructor(
    private readonly cli: string,
    private readonly args: string[],
    private readonly cwd: string | undefined,
    private readonly onPoint: (p: TrainPoint, reset: boolean) => void,
  ) {}

  open(): void {
    this.writeEmitter.fire(line(`twisted-smc ${this.args.join(" ")}`));
    // The editor's own runtime runs the CLI (Electron runs as plain Node with this variable).
    this.child = spawn(process.execPath, [this.cli, ...this.args], { cwd: this.cwd, env: { ...process.env, ELECTRON_RUN_AS_NODE: "1" } });
    let buffer = "";
    let first = true;
    this.child.stdout!.on("data", (d: Buffer) => {
      buffer += d.toString();
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const text = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        this.writeEmitter.fire(line(this.describe(text, () => (first ? ((first = false), true) : false))));
      }
    });
    this.child.stderr!.on("data", (d: Buffer) => this.writeEmitter.fire(line(d.toString().trimEnd())));
    this.child.on("error", (e) => {
      this.writeEmitter.fire(line(`could not start the trainer: ${e.message}`));
      this.closeEmitter.fire(1);
    });
    this.child.on("close", (code) => {
      if (buffer) this.writeEmitter.fire(line(buffer));
      this.writeEmitter.fire(
        line(
          code === 130 ? "Stopped; the last checkpoint is kept (run again with resume: true to continue)." : `Exit code ${code ?? "?"}.`,
        ),
      );
      this.closeEmitter.fire(code === 130 ? 0 : (code ?? 1));
    });
  }

  /** A human line for one line of output; JSON progress also feeds the loss curve. */
  private describe(text: string, isFirst: () => boolean): string {
    const m = parseTrainProgressLine(text);
    switch (m?.type) {
      case undefined:
        return text;
      case "start":
        return `Training on ${m.problems} problems (${m.data}), ${m.batchesPerEpoch} batches per epoch${m.resumedAt !== undefined ? `, resuming after batch ${m.resumedAt}` : ""}${m.heldOut ? `; ${heldOutLine(m.heldOut)}` : ""}`;
      case "batch":
        this.onPoint({ step: m.step, loss: m.loss, reward: m.reward }, isFirst());
        return `[${m.step}/${m.total}] loss ${m.loss.toFixed(4)} reward ${m.reward.toFixed(3)} ESS ${(100 * m.ess).toFixed(0)}% ${m.seconds}s`;
      case "checkpoint":
        return `checkpoint ${m.path}`;
      case "finish":
        return `${FINISH_PART_NAMES[m.part]}: ${finishProgressText(m)}`;
      case "end":
        return m.stopped ? `Stopped after ${m.batches} batches.` : `Done: ${m.batches} batches; twist written to ${m.twistPath}`;
    }
  }

  close(): void {
    // Terminate: the trainer stops after the batch in progress and keeps its checkpoint.
    if (this.child && this.child.exitCode === null) this.child.kill("SIGTERM");
  }
}

export class TwistedSmcTaskProvider implements vscode.TaskProvider {
  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly onPoint: (p: TrainPoint, reset: boolean) => void,
  ) {}

  provideTasks(): vscode.Task[] {
    if (!vscode.workspace.isTrusted) return [];
    return [
      this.build(
        { type: TASK_TYPE, command: "train", twist: "step", loss: "prm", output_dir: "twists/step" },
        "train step twist (line verifier)",
      ),
      this.build(
        { type: TASK_TYPE, command: "train", twist: "token", loss: "prm", output_dir: "twists/token" },
        "train token twist (digit twist)",
      ),
      this.build({ type: TASK_TYPE, command: "eval", n: 100, particles: 16 }, "evaluate"),
    ];
  }

  resolveTask(task: vscode.Task): vscode.Task | undefined {
    if (!vscode.workspace.isTrusted) return undefined;
    const def = task.definition as TwistedSmcTaskDefinition;
    return this.build(def, task.name, task.scope);
  }

  build(
    def: TwistedSmcTaskDefinition,
    name: string,
    scope: vscode.TaskScope | vscode.WorkspaceFolder = vscode.TaskScope.Workspace,
  ): vscode.Task {
    const cli = vscode.Uri.joinPath(this.extensionUri, "dist", "cli.js").fsPath;
    const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const task = new vscode.Task(
      def,
      scope,
      name,
      TASK_TYPE,
      new vscode.CustomExecution(
        async (resolved) => new CliTerminal(cli, taskArgs(resolved as TwistedSmcTaskDefinition), cwd, this.onPoint),
      ),
    );
    task.group = def.command === "eval" ? vscode.TaskGroup.Test : vscode.TaskGroup.Build;
    task.presentationOptions = { reveal: vscode.TaskRevealKind.Always, panel: vscode.TaskPanelKind.Dedicated };
    return task;
  }
}

/** Start Training / Evaluate from the palette: a few quick picks, then the task. */
export function taskCommands(provider: TwistedSmcTaskProvider): CommandTable {
  const needTrust = () => {
    if (vscode.workspace.isTrusted) return false;
    void vscode.window
      .showWarningMessage(
        "Twisted SMC: training and evaluation run code on this workspace's files; trust the workspace first.",
        "Manage Workspace Trust",
      )
      .then((pick) => {
        if (pick) void vscode.commands.executeCommand("workbench.trust.manage");
      });
    return true;
  };
  return {
    "twistedSmc.startTraining": async () => {
      if (needTrust()) return;
      const kind = await vscode.window.showQuickPick(
        [
          {
            label: "line verifier",
            description: "step level, learned from outcomes: the shipped twist-step.json",
            twist: "step",
            loss: "prm",
          },
          {
            label: "digit twist",
            description: "token level: the line verifier, a partial-result head and result lengths (the shipped twist-token.json)",
            twist: "token",
            loss: "prm",
          },
          { label: "step value head", description: "step level, value regression on the hidden state", twist: "step", loss: "bce" },
          {
            label: "token head (CTL)",
            description: "token level, contrastive twist learning on the hidden state",
            twist: "token",
            loss: "ctl",
          },
        ] as const,
        { title: "Twisted SMC: which twist to train" },
      );
      if (!kind) return;
      const data = await vscode.window.showQuickPick(
        [
          { label: "synthetic", description: "generated word problems like the shipped model's" },
          { label: "gsm8k", description: "GSM8K train split (for real models)" },
          { label: "file…", description: "a GSM8K-format JSONL file" },
        ],
        { title: "Twisted SMC: training data" },
      );
      if (!data) return;
      let dataset = data.label;
      if (dataset === "file…") {
        const files = await vscode.window.showOpenDialog({
          canSelectMany: false,
          filters: { JSONL: ["jsonl"] },
          title: "Problems with answers (GSM8K JSONL)",
        });
        if (!files?.length) return;
        dataset = files[0].fsPath;
      }
      const preset = await vscode.window.showQuickPick(TRAINING_PRESETS, { title: "Twisted SMC: how long to train" });
      if (!preset) return;
      const { model, variant, device } = modelSettings();
      const def: TwistedSmcTaskDefinition = {
        type: TASK_TYPE,
        command: "train",
        twist: kind.twist,
        loss: kind.loss,
        dataset,
        ...preset.flags,
        output_dir: `twists/${kind.twist}-${kind.loss}-${preset.label}`,
      };
      // The model the editor solves with, on the device and in the precision it solves with.
      if (model) def.model_name = model;
      if (variant && variant !== "auto") def.dtype = variant;
      if (device && device !== "auto") def.device = device;
      await vscode.tasks.executeTask(provider.build(def, `train ${kind.label} (${preset.label})`));
    },
    "twistedSmc.evaluate": async () => {
      if (needTrust()) return;
      const n = await vscode.window.showQuickPick(["100", "500"], { title: "Twisted SMC: problems to evaluate on" });
      if (!n) return;
      const { model, twist, variant, systemPrompt } = modelSettings();
      const def: TwistedSmcTaskDefinition = { type: TASK_TYPE, command: "eval", n: Number(n), particles: 16 };
      // The model the editor solves with, as it solves with it.
      if (model) def.model = model;
      if (variant && variant !== "auto") def.dtype = variant;
      if (systemPrompt?.trim()) def.system = systemPrompt;
      if (twist && twist !== "none") def.twist = twist;
      await vscode.tasks.executeTask(provider.build(def, "evaluate"));
    },
  };
}
