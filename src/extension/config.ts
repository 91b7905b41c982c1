/**
 * The one typed reader of the extension's settings. In an untrusted workspace the model and twist come
 * only from user settings: a workspace must not point the engine at files it brought along.
 */
import * as vscode from "vscode";
import type { DeviceRequest, Level, ModelSettings, ModelVariant, Resampling, SmcSettings } from "../protocol/protocol";

export const SECTION = "twistedSmc";

/** Settings whose change needs the engine to load another model. */
export const MODEL_SETTINGS = ["model", "device", "modelVariant"].map((k) => `${SECTION}.${k}`);

function trustedString(cfg: vscode.WorkspaceConfiguration, key: string): string {
  if (vscode.workspace.isTrusted) return cfg.get<string>(key, "");
  return cfg.inspect<string>(key)?.globalValue ?? "";
}

export function modelSettings(): ModelSettings {
  const cfg = vscode.workspace.getConfiguration(SECTION);
  return {
    model: trustedString(cfg, "model"),
    twist: trustedString(cfg, "twist"),
    device: cfg.get<DeviceRequest>("device", "auto"),
    variant: cfg.get<ModelVariant>("modelVariant", "auto"),
    systemPrompt: cfg.get<string>("systemPrompt", ""),
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
