/** Activation: wiring only. Each piece lives in its own module. */
import * as vscode from "vscode";
import { ProblemCodeLensProvider } from "./codeLens";
import { EngineClient } from "./engineClient";
import { MODEL_SETTINGS } from "./config";
import { RUN_SCHEME, RunDocumentProvider } from "./runDocument";
import { RunStore } from "./runStore";
import { OPEN_RUN_COMMAND, registerSolveCommands } from "./solveCommands";
import { PANEL_VIEW, ParticlePanel } from "./panel";
import { createStatusBar, EngineStatusBar } from "./statusBar";
import { registerTaskCommands, TASK_TYPE, TwistedSmcTaskProvider } from "./tasks";

/** What activation returns: the pieces, for the extension-host tests. */
export interface ExtensionApi {
  engine: EngineClient;
  runs: RunStore;
  panel: ParticlePanel;
  tasks: TwistedSmcTaskProvider;
  statusBar: EngineStatusBar;
}

export function activate(context: vscode.ExtensionContext): ExtensionApi | undefined {
  try {
    const log = vscode.window.createOutputChannel("Twisted SMC", { log: true });
    const engine = new EngineClient(context, log);
    const runs = new RunStore(context.workspaceState);
    const statusBar = createStatusBar(engine);
    context.subscriptions.push(log, engine, runs, statusBar);
    context.subscriptions.push(
      engine.onDidCrash(async (message) => {
        const pick = await vscode.window.showErrorMessage(message, "Restart Engine", "Show Log");
        if (pick === "Restart Engine") await vscode.commands.executeCommand("twistedSmc.restartEngine");
        if (pick === "Show Log") log.show();
      }),
    );
    const panel = new ParticlePanel(context.extensionUri, runs);
    context.subscriptions.push(panel, vscode.window.registerWebviewViewProvider(PANEL_VIEW, panel));
    registerSolveCommands(context, engine, runs, panel);
    const tasks = new TwistedSmcTaskProvider(context.extensionUri, (point, reset) => panel.trainProgress(point, reset));
    context.subscriptions.push(vscode.tasks.registerTaskProvider(TASK_TYPE, tasks));
    registerTaskCommands(context, tasks);
    context.subscriptions.push(
      vscode.languages.registerCodeLensProvider({ language: "markdown" }, new ProblemCodeLensProvider()),
      vscode.workspace.registerTextDocumentContentProvider(RUN_SCHEME, new RunDocumentProvider(runs)),
      vscode.commands.registerCommand(OPEN_RUN_COMMAND, (id: string) => panel.show(id)),
      vscode.commands.registerCommand("twistedSmc.openRunAsText", async (id?: string) => {
        const runId = id ?? runs.all()[0]?.id;
        if (!runId) return void vscode.window.showInformationMessage("Twisted SMC: no run yet.");
        const doc = await vscode.workspace.openTextDocument(vscode.Uri.from({ scheme: RUN_SCHEME, path: `${runId}.md` }));
        await vscode.window.showTextDocument(doc, { preview: true, viewColumn: vscode.ViewColumn.Beside });
      }),
      vscode.commands.registerCommand("twistedSmc.restartEngine", async () => {
        await engine.restart();
        void vscode.window.showInformationMessage("Twisted SMC: engine restarted.");
      }),
      vscode.commands.registerCommand("twistedSmc.showStatus", async () => {
        try {
          const s = await engine.status();
          const detail = [`Engine ${engine.state}, pid ${s.pid}, version ${s.version}`, `Model: ${s.model ?? "not loaded yet"}`, `Device: ${s.deviceChoice ?? s.device ?? "not chosen yet"}`, `Twist: ${s.twist ?? "none"}`].join("\n");
          const pick = await vscode.window.showInformationMessage("Twisted SMC engine", { modal: true, detail }, "Restart Engine", "Show Log");
          if (pick === "Restart Engine") await vscode.commands.executeCommand("twistedSmc.restartEngine");
          if (pick === "Show Log") log.show();
        } catch (e) {
          void vscode.window.showErrorMessage(`Twisted SMC: ${(e as Error).message}`);
        }
      }),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (MODEL_SETTINGS.some((s) => e.affectsConfiguration(s))) void engine.statusIfRunning();
      }),
      vscode.workspace.onDidGrantWorkspaceTrust(() => log.info("workspace trusted: model and twist settings of the workspace now apply")),
    );
    return { engine, runs, panel, tasks, statusBar };
  } catch (e) {
    // VS Code swallows activation errors; say it where the user looks.
    void vscode.window.showErrorMessage(`Twisted SMC failed to activate: ${(e as Error).message}`);
    return undefined;
  }
}

export function deactivate(): void {}
