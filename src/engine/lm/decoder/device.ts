/**
 * Which onnxruntime execution provider runs the model. `auto` tries what this machine can use, most
 * capable first, and keeps the reason each other choice was not taken, so the CLI, the solve result
 * and the editor's status bar can say what runs where and why.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join } from "node:path";
import { InputError } from "../../util/errors";
import { WebGpuValidation, webgpuValidationFromEnv } from "../../environment";

import { DEVICES, DeviceRequest } from "../../../protocol/protocol";

export { DEVICES };
export type { DeviceRequest };
export type Device = Exclude<DeviceRequest, "auto">;

export interface DeviceAttempt {
  device: Device;
  /** Why it was not used; absent for the device that was chosen. */
  skipped?: string;
}

const LIB_DIRS = [
  "/usr/lib/x86_64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/usr/lib64",
  "/usr/lib",
  "/lib/x86_64-linux-gnu",
  "/usr/local/lib",
];

function onnxruntimeBinDir(): string | undefined {
  try {
    const pkg = require.resolve("onnxruntime-node/package.json");
    return join(dirname(pkg), "bin", "napi-v6", process.platform, process.arch);
  } catch {
    return undefined;
  }
}

/** A Vulkan driver (ICD) the loader would offer: its manifest and the library it names. */
export interface VulkanDriver {
  manifest: string;
  library: string;
}

/** Drivers that run Vulkan on the CPU: fine for testing the GPU path, slower than onnxruntime's CPU provider. */
const SOFTWARE_DRIVER = /lvp|lavapipe|swiftshader/i;

function manifestsIn(path: string): string[] {
  try {
    if (!statSync(path).isDirectory()) return [path];
    return readdirSync(path)
      .filter((f) => f.endsWith(".json"))
      .sort()
      .map((f) => join(path, f));
  } catch {
    return [];
  }
}

/**
 * The Vulkan drivers the loader would find, searched as it does: VK_DRIVER_FILES (or the older
 * VK_ICD_FILENAMES) replaces the search, VK_ADD_DRIVER_FILES adds to it, else the icd.d folders of
 * the XDG config and data paths and /etc.
 */
export function vulkanDrivers(env: NodeJS.ProcessEnv = process.env): VulkanDriver[] {
  const list = (v: string | undefined) => (v ?? "").split(":").filter(Boolean);
  const explicit = list(env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES);
  const home = env.HOME ?? homedir();
  const dirs = explicit.length
    ? explicit
    : [
        ...list(env.XDG_CONFIG_HOME ?? join(home, ".config")).map((d) => join(d, "vulkan/icd.d")),
        ...list(env.XDG_CONFIG_DIRS ?? "/etc/xdg").map((d) => join(d, "vulkan/icd.d")),
        "/etc/vulkan/icd.d",
        ...list(env.XDG_DATA_HOME ?? join(home, ".local/share")).map((d) => join(d, "vulkan/icd.d")),
        ...list(env.XDG_DATA_DIRS ?? "/usr/local/share:/usr/share").map((d) => join(d, "vulkan/icd.d")),
      ];
  const drivers: VulkanDriver[] = [];
  for (const manifest of [...dirs, ...list(env.VK_ADD_DRIVER_FILES)].flatMap(manifestsIn)) {
    try {
      const library = JSON.parse(readFileSync(manifest, "utf8"))?.ICD?.library_path;
      if (typeof library === "string") drivers.push({ manifest, library });
    } catch {
      // An unreadable manifest is one the loader skips too.
    }
  }
  return drivers;
}

/**
 * A reason the device cannot (or, under `auto`, should not) be used here that is cheap to find
 * before asking onnxruntime, if any.
 */
export function precheck(device: Device, request: DeviceRequest = device, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (device === "cuda") {
    const bin = onnxruntimeBinDir();
    if (process.platform !== "linux" && process.platform !== "win32") return `CUDA is not available on ${process.platform}`;
    if (
      !bin ||
      !existsSync(join(bin, process.platform === "win32" ? "onnxruntime_providers_cuda.dll" : "libonnxruntime_providers_cuda.so"))
    ) {
      return "onnxruntime-node's CUDA provider libraries are not installed (reinstall it with --onnxruntime-node-install=cuda12 on a machine with internet)";
    }
  }
  if (device === "webgpu" && process.platform === "linux") {
    const extra = (env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean);
    if (![...extra, ...LIB_DIRS].some((d) => existsSync(join(d, "libvulkan.so.1")))) return "no Vulkan loader (libvulkan.so.1) for WebGPU";
    if (request === "auto") {
      const drivers = vulkanDrivers(env);
      if (!drivers.length) return "no Vulkan driver is installed (no icd.d manifest), so WebGPU has no GPU to use";
      if (drivers.every((d) => SOFTWARE_DRIVER.test(basename(d.library)))) {
        return `the only Vulkan driver runs on the CPU (${drivers.map((d) => basename(d.library)).join(", ")}), slower than the CPU provider; --device webgpu forces it`;
      }
    }
  }
  return undefined;
}

/**
 * Session config entries for every session the engine runs: onnxruntime's worker threads stop spinning
 * when a run returns (they still spin between the kernels of a run). Between runs the engine works in
 * JavaScript — the twist, the draw, the weights — and workers left spinning take the cores it needs: on
 * 2 cores a twisted-SMC step on real problems took about a fifth longer (docs/performance.md).
 */
export const SESSION_CONFIG = { force_spinning_stop: "1" } as const;

/**
 * The execution provider as onnxruntime takes it. WebGPU's validation mode (onnxruntime's default is
 * `basic`) is `validationMode` where given, else TWISTED_SMC_WEBGPU_VALIDATION's in `env` (process.env
 * unless a test passes another; environment.ts): validating each dispatch costs CPU time per kernel,
 * which a small model's decode step is mostly made of; `disabled` crashes on a GPU error.
 * `storageBufferCacheMode: "simple"` makes onnxruntime reuse GPU buffers of exactly the sizes asked
 * for, with no limit (its default keeps at most 10 free of each size bucket). onnxruntime reads it
 * from the process's first WebGPU session only, and never frees what it keeps: it suits tensors whose
 * sizes repeat, such as a fixed-capacity KV cache.
 */
export function executionProvider(
  device: Device,
  env?: NodeJS.ProcessEnv,
  storageBufferCacheMode?: "simple",
  validationMode?: WebGpuValidation,
): string | { name: "webgpu"; validationMode?: WebGpuValidation; storageBufferCacheMode?: "simple" } {
  if (device !== "webgpu") return device;
  const mode = validationMode ?? webgpuValidationFromEnv(env);
  if (!mode && !storageBufferCacheMode) return device;
  return { name: "webgpu", ...(mode ? { validationMode: mode } : {}), ...(storageBufferCacheMode ? { storageBufferCacheMode } : {}) };
}

/** The devices to try, in order, for a request. */
export function candidates(request: DeviceRequest): Device[] {
  return request === "auto" ? ["cuda", "webgpu", "cpu"] : [request];
}

/** One line for people: what runs and why the others do not. */
export function describeDeviceChoice(attempts: readonly DeviceAttempt[]): string {
  const chosen = attempts.find((a) => !a.skipped);
  const others = attempts.filter((a) => a.skipped).map((a) => `${a.device}: ${a.skipped}`);
  return `${chosen ? chosen.device : "none"}${others.length ? ` (not used: ${others.join("; ")})` : ""}`;
}

/** No device asked for could run the model; the message names each one and why. */
export class DeviceUnavailableError extends InputError {}

/** A forward pass failed on a GPU: the run can go on only on another device. */
export class DeviceRunError extends InputError {
  constructor(
    readonly device: string,
    message: string,
    /** What failed, without the device (`failed`): a caller that adds context reuses it. */
    readonly what = message,
  ) {
    super(message);
    this.name = "DeviceRunError";
  }

  /** "`device` `what`": e.g. "webgpu (…) failed to give the KV cache more capacity: out of GPU memory". */
  static failed(device: string, what: string): DeviceRunError {
    return new DeviceRunError(device, `${device} ${what}`, what);
  }
}

const firstLine = (s: string) =>
  s
    .split("\n")[0]
    .replace(/^.*?\] /, "")
    .slice(0, 200);

/** Why a GPU provider could not start, in words a user can act on (onnxruntime's own line is kept). */
export function deviceFailure(device: string, message: string): string {
  if (device === "webgpu" && /adapter_result|RequestAdapter|vkCreateInstance|vkEnumeratePhysicalDevices/i.test(message)) {
    return `WebGPU found no usable GPU adapter (check the Vulkan driver: vulkaninfo --summary) [${firstLine(message)}]`;
  }
  if (/out of memory|OOM|allocat/i.test(message)) return `out of GPU memory [${firstLine(message)}]`;
  return firstLine(message);
}
