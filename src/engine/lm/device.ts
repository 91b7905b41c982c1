/**
 * Which onnxruntime execution provider runs the model. `auto` tries what this machine can use, most
 * capable first, and keeps the reason each other choice was not taken, so the CLI, the solve result
 * and the editor's status bar can say what runs where and why.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

export const DEVICES = ["auto", "cpu", "webgpu", "cuda"] as const;
export type DeviceRequest = (typeof DEVICES)[number];
export type Device = Exclude<DeviceRequest, "auto">;

export interface DeviceAttempt {
  device: Device;
  /** Why it was not used; absent for the device that was chosen. */
  skipped?: string;
}

const LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/local/lib"];

function onnxruntimeBinDir(): string | undefined {
  try {
    const pkg = require.resolve("onnxruntime-node/package.json");
    return join(dirname(pkg), "bin", "napi-v6", process.platform, process.arch);
  } catch {
    return undefined;
  }
}

/** A reason the device cannot work here that is cheap to find before asking onnxruntime, if any. */
export function precheck(device: Device): string | undefined {
  if (device === "cuda") {
    const bin = onnxruntimeBinDir();
    if (process.platform !== "linux" && process.platform !== "win32") return `CUDA is not available on ${process.platform}`;
    if (!bin || !existsSync(join(bin, process.platform === "win32" ? "onnxruntime_providers_cuda.dll" : "libonnxruntime_providers_cuda.so"))) {
      return "onnxruntime-node's CUDA provider libraries are not installed (reinstall it with --onnxruntime-node-install=cuda12 on a machine with internet)";
    }
  }
  if (device === "webgpu" && process.platform === "linux") {
    const extra = (process.env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean);
    if (![...extra, ...LIB_DIRS].some((d) => existsSync(join(d, "libvulkan.so.1")))) return "no Vulkan loader (libvulkan.so.1) for WebGPU";
  }
  return undefined;
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
