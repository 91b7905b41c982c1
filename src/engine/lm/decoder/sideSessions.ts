/**
 * Sessions of the small graphs the engine runs beside a decoder, on the decoder's device: the logit
 * rows and draw graphs (logitSessions.ts) and the KV-cache reorder (kvReorder.ts).
 */
import * as ort from "onnxruntime-node";
import { Device, DeviceRunError, deviceFailure, executionProvider, SESSION_CONFIG } from "./device";
import { WebGpuValidation } from "../../environment";

/** An int64 vector input. */
export const int64Tensor = (values: readonly number[]) => new ort.Tensor("int64", BigInt64Array.from(values, BigInt), [values.length]);

/**
 * A session for `model` on `device`; the outputs named in `onDevice` stay there as GPU buffers. On
 * WebGPU, `validation` is the decoder's validation mode (OnnxDecoderOptions.webgpuValidation; unset:
 * TWISTED_SMC_WEBGPU_VALIDATION's).
 */
export function createSideSession(
  model: Uint8Array,
  device: Device,
  threads: number,
  onDevice: readonly string[] = [],
  validation?: WebGpuValidation,
): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, {
    executionProviders: [executionProvider(device, undefined, undefined, validation)],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
    extra: { session: { ...SESSION_CONFIG } },
    // Each output named: a blanket location crashed onnxruntime-node.
    ...(onDevice.length ? { preferredOutputLocation: Object.fromEntries(onDevice.map((n) => [n, "gpu-buffer" as const])) } : {}),
  });
}

/** Runs a side session; a GPU's failure becomes a DeviceRunError saying what failed (`doing`) and where. */
export async function runSideSession(
  session: Promise<ort.InferenceSession>,
  feeds: Record<string, ort.Tensor>,
  device: Device,
  where: string,
  doing: string,
): Promise<ort.InferenceSession.OnnxValueMapType> {
  try {
    return await (await session).run(feeds);
  } catch (e) {
    if (device === "cpu") throw e;
    throw DeviceRunError.failed(where, `failed to ${doing}: ${deviceFailure(device, (e as Error).message)}`);
  }
}

/** Releases a session that may have failed to load. */
export async function releaseSession(session: Promise<ort.InferenceSession>): Promise<void> {
  await session.then(
    (s) => s.release(),
    () => undefined,
  );
}
