/** Activation: wiring only. Each piece lives in its own module. */
import * as vscode from "vscode";
import { ApiKeyStore, apiKeyCommands, restartOnKeyChange } from "./apiKey";
import { ProblemCodeLensProvider } from "./codeLens";
import { EngineClient } from "./engineClient";
import { MODEL_SETTINGS } from "./config";
import { registerCommands } from "./commandTable";
import { downloadCommands } from "./downloadModel";
import { engineCommands, showCrashes } from "./engineCommands";
import { RUN_SCHEME, RunDocumentProvider, runCommands } from "./runDocument";
import { RunStore } from "./runStore";
import { solveCommands } from "./solveCommands";
import { PANEL_VIEW, ParticlePanel } from "./panel";
import { createStatusBar, EngineStatusBar } from "./statusBar";
import { TASK_TYPE, taskCommands, TwistedSmcTaskProvider } from "./tasks";

/** What activation returns: the pieces, for the extension-host tests. */
export interface ExtensionApi {
  engine: EngineClient;
  runs: RunStore;
  panel: ParticlePanel;
  tasks: TwistedSmcTaskProvider;
  statusBar: EngineStatusBar;
  /** The inference server's API key: write-only (store, clear), as the commands use it. */
  apiKey: Pick<ApiKeyStore, "store" | "clear">;
}

export function activate(context: vscode.ExtensionContext): ExtensionApi | undefined {
  try {
    const log = vscode.window.createOutputChannel("Twisted SMC", { log: true });
    const apiKey = new ApiKeyStore(context.secrets);
    const engine = new EngineClient(context, log, () => apiKey.read());
    const runs = new RunStore(context.workspaceState);
    const statusBar = createStatusBar(engine);
    const panel = new ParticlePanel(context.extensionUri, runs);
    const tasks = new TwistedSmcTaskProvider(context.extensionUri, (point, reset) => panel.trainProgress(point, reset));
    context.subscriptions.push(
      log,
      engine,
      runs,
      statusBar,
      panel,
      showCrashes(engine, log),
      restartOnKeyChange(apiKey, engine, log),
      vscode.window.registerWebviewViewProvider(PANEL_VIEW, panel),
      vscode.tasks.registerTaskProvider(TASK_TYPE, tasks),
      vscode.languages.registerCodeLensProvider({ language: "markdown" }, new ProblemCodeLensProvider()),
      vscode.workspace.registerTextDocumentContentProvider(RUN_SCHEME, new RunDocumentProvider(runs)),
      ...registerCommands(
        solveCommands(engine, runs, panel),
        runCommands(runs, panel),
        engineCommands(engine, log),
        taskCommands(tasks),
        downloadCommands(context),
        apiKeyCommands(apiKey),
      ),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (MODEL_SETTINGS.some((s) => e.affectsConfiguration(s))) void engine.statusIfRunning();
      }),
      vscode.workspace.onDidGrantWorkspaceTrust(() =>
        log.info("workspace trusted: the workspace's model, twist and backend settings now apply"),
      ),
    );
    return {
      engine,
      runs,
      panel,
      tasks,
      statusBar,
      apiKey: { store: (key) => apiKey.store(key), clear: () => apiKey.clear() },
    };
  } catch (e) {
    // VS Code swallows activation errors; say it where the user looks.
    void vscode.window.showErrorMessage(`Twisted SMC failed to activate: ${(e as Error).message}`);
    return undefined;
  }
}

export function deactivate(): void {}
