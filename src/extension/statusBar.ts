/**
 * The status bar item: engine state, the device in use and the model — or, with the openai backend, the
 * inference server and its model; a click shows the details. It asks the engine only when the state
 * changes (never on a timer): an idle editor sends the engine nothing.
 */
import * as vscode from "vscode";
import { backendSetting, MODEL_SETTINGS, modelSettings, SERVER_SETTINGS, serverSetting } from "./config";
import { EngineClient, EngineState } from "./engineClient";
import { describeServer, serverLabel } from "./remoteServer";

const ICONS: Record<EngineState, string> = {
  stopped: "$(circle-outline)",
  starting: "$(loading~spin)",
  ready: "$(pulse)",
  busy: "$(loading~spin)",
  crashed: "$(error)",
};

export interface EngineStatusBar extends vscode.Disposable {
  /** What the item shows now (for the extension-host tests). */
  readonly text: string;
}

/**
 * The model's short name: `org/name` for a Hub model in the Hugging Face cache
 * (…/models--org--name/snapshots/<commit>), else the folder's last path component.
 */
export function modelLabel(path: string): string {
  const hub = /(?:^|[\\/])models--([^\\/]+?)--([^\\/]+)[\\/]snapshots[\\/][0-9a-f]{40}[\\/]?$/.exec(path);
  if (hub) return `${hub[1]}/${hub[2]}`;
  return path.split(/[\\/]/).filter(Boolean).pop() ?? path;
}

/** The model the `twistedSmc.model` setting names: a Hub id (`org/name`) as it is, a folder by its last component. */
export function settingLabel(setting: string): string {
  const value = setting.trim();
  if (!value) return "tiny-math-llama";
  if (/^[\w.-]+\/[\w.-]+(@\S+)?$/.test(value) && !/^[.~]/.test(value)) return value.replace(/@\S+$/, "");
  return modelLabel(value);
}

export function createStatusBar(engine: EngineClient): EngineStatusBar {
  const item = vscode.window.createStatusBarItem("twistedSmc.status", vscode.StatusBarAlignment.Right, 100);
  item.name = "Twisted SMC engine";
  item.command = "twistedSmc.showStatus";
  // The server settings changed since the engine last said what it runs: show the settings' server.
  let serverChanged = false;
  // The model settings changed (Download Model…, say): show the settings' model, on no device yet.
  let modelChanged = false;
  const render = () => {
    const s = engine.lastStatus;
    const crashed = engine.state === "crashed";
    if (!crashed && backendSetting() === "openai") return renderServer(s?.server && !serverChanged ? s.server : undefined);
    const device = s?.device && !crashed && !modelChanged ? s.device.split(" ")[0].toUpperCase().replace("WEBGPU", "WebGPU") : undefined;
    const model = modelChanged ? settingLabel(modelSettings().model) : s?.model ? modelLabel(s.model) : undefined;
    item.text = `${ICONS[engine.state]} Twisted SMC${crashed ? ": crashed" : device ? `: ${device}` : ""}${model && !crashed ? ` · ${model}` : ""}`;
    item.tooltip = crashed
      ? "The engine stopped unexpectedly. Click to restart it or read the log; the next solve also restarts it."
      : modelChanged
        ? `Engine ${engine.state}\nModel: ${modelSettings().model || "the shipped tiny-math-llama"} (from the settings; loaded by the next solve)\nClick for details`
        : `Engine ${engine.state}${s?.deviceChoice ? `\nDevice: ${s.deviceChoice}` : ""}${s?.model ? `\nModel: ${s.model}${s.modelFile ? ` (${s.modelFile})` : ""}` : ""}\nClick for details`;
    item.backgroundColor = crashed ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  };
  /** The openai backend: the server the engine has open, else the one the settings name (before the first solve). */
  const renderServer = (loaded: string | undefined) => {
    const server = loaded ?? describeServer(serverSetting());
    item.text = `${ICONS[engine.state]} Twisted SMC: server · ${serverLabel(server)}`;
    item.tooltip = `Engine ${engine.state}\nInference server: ${server}${loaded ? "" : " (from the settings; used by the next solve)"}\nClick for details`;
    item.backgroundColor = undefined;
  };
  render();
  item.show();
  let previous = engine.state;
  const sub = engine.onDidChangeState(async (state) => {
    const from = previous;
    previous = state;
    render();
    // The engine may have loaded a model: ask once when it comes up or finishes work. Asking does not
    // change the state, so this cannot feed itself.
    if (state === "ready" && (from === "starting" || from === "busy")) {
      await engine.statusIfRunning();
      if (from === "busy") serverChanged = modelChanged = false;
      render();
    }
  });
  // A change of backend or server shows at once, from the settings alone (no request).
  const settings = vscode.workspace.onDidChangeConfiguration((e) => {
    const server = SERVER_SETTINGS.some((k) => e.affectsConfiguration(k));
    const model = MODEL_SETTINGS.some((k) => !SERVER_SETTINGS.includes(k) && e.affectsConfiguration(k));
    if (!server && !model) return;
    serverChanged ||= server;
    modelChanged ||= model;
    render();
  });
  // Trusting the workspace may bring its backend setting in.
  const trust = vscode.workspace.onDidGrantWorkspaceTrust(() => {
    serverChanged = true;
    render();
  });
  return {
    get text() {
      return item.text;
    },
    dispose: () => vscode.Disposable.from(item, sub, settings, trust).dispose(),
  };
}
