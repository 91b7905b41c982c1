/**
 * The one typed reader of the extension's settings. In an untrusted workspace the model, the twist and
 * the backend with its server come only from user settings: a workspace must not point the engine at
 * files it brought along, nor send the problems (and the user's API key) to a server it chose. The
 * server's URL is also machine-scoped (package.json), so no workspace sets it even when trusted.
 */
import * as vscode from "vscode";
import type {
  Backend,
  DeviceRequest,
  Level,
  ModelSettings,
  ModelVariant,
  Resampling,
  ServerSettings,
  SmcSettings,
} from "../protocol/protocol";

export const SECTION = "twistedSmc";

/** The settings of the openai backend: a change takes effect on the next solve (the engine keys its model on them). */
export const SERVER_SETTINGS = ["backend", "server.url", "server.model"].map((k) => `${SECTION}.${k}`);

/** Settings whose change needs the engine to load another model (or open another server). */
export const MODEL_SETTINGS = [...["model", "device", "modelVariant"].map((k) => `${SECTION}.${k}`), ...SERVER_SETTINGS];

function trustedString(cfg: vscode.WorkspaceConfiguration, key: string): string {
  if (vscode.workspace.isTrusted) return cfg.get<string>(key, "");
  return cfg.inspect<string>(key)?.globalValue ?? "";
}

/** The backend solves run on: `openai` only when the (trusted) setting says so. */
export function backendSetting(): Backend {
  return trustedString(vscode.workspace.getConfiguration(SECTION), "backend") === "openai" ? "openai" : "local";
}

/** The inference server of the openai backend, as the settings name it (the key is not a setting). */
export function serverSetting(): ServerSettings {
  const cfg = vscode.workspace.getConfiguration(SECTION);
  return { url: trustedString(cfg, "server.url").trim(), model: trustedString(cfg, "server.model").trim() };
}

export function modelSettings(): ModelSettings {
  const cfg = vscode.workspace.getConfiguration(SECTION);
  const backend = backendSetting();
  return {
    model: trustedString(cfg, "model"),
    twist: trustedString(cfg, "twist"),
    device: cfg.get<DeviceRequest>("device", "auto"),
    variant: cfg.get<ModelVariant>("modelVariant", "auto"),
    systemPrompt: cfg.get<string>("systemPrompt", ""),
    backend,
    ...(backend === "openai" ? { server: serverSetting() } : {}),
  };
}

export function smcSettings(): SmcSettings {
  const cfg = vscode.workspace.getConfiguration(SECTION);
  return {
    particles: cfg.get<number>("particles", 16),
    level: cfg.get<Level>("level", "step"),
    resampling: cfg.get<Resampling>("resampling", "systematic"),
    essThreshold: cfg.get<number>("essThreshold", 0.5),
    maxTokens: cfg.get<number>("maxTokens", 96),
    temperature: cfg.get<number>("temperature", 1),
    seed: cfg.get<number>("seed", 0),
  };
}
