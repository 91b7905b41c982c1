/** The engine's own commands: restart it, and show what it runs (with Restart Engine and the log). */
import * as vscode from "vscode";
import type { CommandTable } from "./commandTable";
import { EngineClient } from "./engineClient";

export const RESTART_ENGINE_COMMAND = "twistedSmc.restartEngine";

export function engineCommands(engine: EngineClient, log: vscode.LogOutputChannel): CommandTable {
  return {
    [RESTART_ENGINE_COMMAND]: async () => {
      await engine.restart();
      void vscode.window.showInformationMessage("Twisted SMC: engine restarted.");
    },
    "twistedSmc.showStatus": async () => {
      try {
        const s = await engine.status();
        const detail = [
          `Engine ${engine.state}, pid ${s.pid}, version ${s.version}`,
          `Model: ${s.model ?? "not loaded yet"}`,
          s.server ? `Inference server: ${s.server}` : `Device: ${s.deviceChoice ?? s.device ?? "not chosen yet"}`,
          `Twist: ${s.twist ?? "none"}`,
        ].join("\n");
        await offerRestart(
          vscode.window.showInformationMessage("Twisted SMC engine", { modal: true, detail }, "Restart Engine", "Show Log"),
          log,
        );
      } catch (e) {
        void vscode.window.showErrorMessage(`Twisted SMC: ${(e as Error).message}`);
      }
    },
  };
}

/** A crash of the engine, shown where the user looks, with the way out. */
export function showCrashes(engine: EngineClient, log: vscode.LogOutputChannel): vscode.Disposable {
  return engine.onDidCrash((message) => offerRestart(vscode.window.showErrorMessage(message, "Restart Engine", "Show Log"), log));
}

async function offerRestart(choice: Thenable<string | undefined>, log: vscode.LogOutputChannel): Promise<void> {
  const pick = await choice;
  if (pick === "Restart Engine") await vscode.commands.executeCommand(RESTART_ENGINE_COMMAND);
  if (pick === "Show Log") log.show();
}
