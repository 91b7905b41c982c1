/**
 * The inference server's API key (openai backend): kept in VS Code's secret storage, handed to the
 * engine process as OPENAI_API_KEY when it starts (engineClient.ts), and nowhere else — no setting,
 * message, record or log holds it. Setting or clearing it restarts an idle engine; a busy one keeps
 * its key until its solve ends, and the user is told.
 */
import * as vscode from "vscode";
import type { CommandTable } from "./commandTable";
import { EngineClient } from "./engineClient";

/** The secret storage key (the key's name, not the key). */
export const API_KEY_SECRET = "twistedSmc.server.apiKey";
export const SET_API_KEY_COMMAND = "twistedSmc.setServerApiKey";
export const CLEAR_API_KEY_COMMAND = "twistedSmc.clearServerApiKey";

/** Write-only access to the stored key for the rest of the extension; only the engine's start reads it. */
export class ApiKeyStore {
  constructor(private readonly secrets: vscode.SecretStorage) {}

  /** For the engine's start only. */
  read(): Thenable<string | undefined> {
    return this.secrets.get(API_KEY_SECRET);
  }

  async store(key: string): Promise<void> {
    await this.secrets.store(API_KEY_SECRET, key.trim());
  }

  async clear(): Promise<void> {
    await this.secrets.delete(API_KEY_SECRET);
  }

  /** The stored key changed (here, or in another window of this profile). */
  onDidChange(listener: () => void): vscode.Disposable {
    return this.secrets.onDidChange((e) => {
      if (e.key === API_KEY_SECRET) listener();
    });
  }
}

/** Restarts the engine on a changed key, and says so when a running solve keeps the old one. */
export function restartOnKeyChange(store: ApiKeyStore, engine: EngineClient, log: vscode.LogOutputChannel): vscode.Disposable {
  return store.onDidChange(() => {
    const when = engine.apiKeyChanged();
    // What happened, never the key.
    log.info(`the inference server's API key changed: the engine uses it from its ${when === "next start" ? "next start" : "restart"}`);
    if (when === "after the current work")
      void vscode.window.showInformationMessage(
        "Twisted SMC: the running solve finishes with the previous API key; the engine restarts with the new one for the next solve.",
      );
  });
}

export function apiKeyCommands(store: ApiKeyStore): CommandTable {
  return {
    [SET_API_KEY_COMMAND]: async () => {
      const key = await vscode.window.showInputBox({
        title: "Twisted SMC: Inference Server API Key",
        prompt: "The key the inference server (twistedSmc.server.url) asks for. It is kept in VS Code's secret storage.",
        password: true,
        ignoreFocusOut: true,
        validateInput: (v) => (v.trim() ? undefined : "Enter a key, or run Clear Inference Server API Key to remove it."),
      });
      if (key === undefined) return;
      await store.store(key);
      void vscode.window.showInformationMessage("Twisted SMC: the inference server's API key is stored.");
    },
    [CLEAR_API_KEY_COMMAND]: async () => {
      await store.clear();
      void vscode.window.showInformationMessage(
        "Twisted SMC: the inference server's API key is removed (an OPENAI_API_KEY in VS Code's own environment still applies).",
      );
    },
  };
}
