import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { candidates, describeDeviceChoice, executionProvider, precheck, vulkanDrivers } from "../../src/engine/lm/decoder/device";

/** A machine layout in a temporary folder: a Vulkan loader and the given driver manifests. */
function machine(drivers: Record<string, string | null>) {
  const root = mkdtempSync(join(tmpdir(), "vk-"));
  const lib = join(root, "lib");
  const icd = join(root, "share/vulkan/icd.d");
  mkdirSync(lib, { recursive: true });
  mkdirSync(icd, { recursive: true });
  writeFileSync(join(lib, "libvulkan.so.1"), "");
  for (const [name, library] of Object.entries(drivers)) {
    writeFileSync(
      join(icd, name),
      library === null ? "{ not json" : JSON.stringify({ file_format_version: "1.0.0", ICD: { library_path: library } }),
    );
  }
  const env = { HOME: root, XDG_CONFIG_DIRS: join(root, "etc"), XDG_DATA_DIRS: join(root, "share"), LD_LIBRARY_PATH: lib };
  return { root, icd, env };
}

describe("device choice", () => {
  it("tries CUDA, then WebGPU, then the CPU under auto; only the named device otherwise", () => {
    assert.deepEqual(candidates("auto"), ["cuda", "webgpu", "cpu"]);
    assert.deepEqual(candidates("webgpu"), ["webgpu"]);
  });

  it("finds Vulkan drivers where the loader looks, and VK_DRIVER_FILES replaces the search", () => {
    const { icd, env } = machine({
      "nvidia_icd.json": "libGLX_nvidia.so.0",
      "lvp_icd.x86_64.json": "libvulkan_lvp.so",
      "broken.json": null,
    });
    assert.deepEqual(
      vulkanDrivers(env).map((d) => d.library),
      ["libvulkan_lvp.so", "libGLX_nvidia.so.0"],
    );
    assert.deepEqual(
      vulkanDrivers({ ...env, VK_DRIVER_FILES: join(icd, "nvidia_icd.json") }).map((d) => d.library),
      ["libGLX_nvidia.so.0"],
    );
    assert.deepEqual(vulkanDrivers({ ...env, VK_DRIVER_FILES: "/nonexistent.json" }), []);
  });

  if (process.platform === "linux") {
    it("auto passes over WebGPU when Vulkan has no driver or only one that runs on the CPU; an explicit request tries it", () => {
      const soft = machine({ "lvp_icd.x86_64.json": "/opt/mesa/libvulkan_lvp.so" }).env;
      assert.match(
        precheck("webgpu", "auto", soft) ?? "",
        /the only Vulkan driver runs on the CPU \(libvulkan_lvp\.so\).*--device webgpu forces it/,
      );
      assert.equal(precheck("webgpu", "webgpu", soft), undefined);
      const hard = machine({ "lvp_icd.x86_64.json": "libvulkan_lvp.so", "nvidia_icd.json": "libGLX_nvidia.so.0" }).env;
      assert.equal(precheck("webgpu", "auto", hard), undefined);
      assert.match(precheck("webgpu", "auto", machine({}).env) ?? "", /no Vulkan driver is installed/);
    });
  }

  it("passes WebGPU's validation mode from TWISTED_SMC_WEBGPU_VALIDATION to onnxruntime, and refuses a mode it does not have; a fixed-capacity cache asks for the exact-size buffer cache", () => {
    assert.equal(executionProvider("webgpu", {}), "webgpu");
    assert.equal(executionProvider("cpu", { TWISTED_SMC_WEBGPU_VALIDATION: "disabled" }), "cpu");
    assert.deepEqual(executionProvider("webgpu", { TWISTED_SMC_WEBGPU_VALIDATION: "wgpuOnly" }), {
      name: "webgpu",
      validationMode: "wgpuOnly",
    });
    assert.throws(
      () => executionProvider("webgpu", { TWISTED_SMC_WEBGPU_VALIDATION: "off" }),
      /TWISTED_SMC_WEBGPU_VALIDATION=off is not one of disabled, wgpuOnly, basic, full/,
    );
    // A fixed-capacity cache's session asks for the exact-size buffer cache (WebGPU only).
    assert.deepEqual(executionProvider("webgpu", {}, "simple"), { name: "webgpu", storageBufferCacheMode: "simple" });
    assert.deepEqual(executionProvider("webgpu", { TWISTED_SMC_WEBGPU_VALIDATION: "disabled" }, "simple"), {
      name: "webgpu",
      validationMode: "disabled",
      storageBufferCacheMode: "simple",
    });
    assert.equal(executionProvider("cpu", {}, "simple"), "cpu");
  });

  it("describes what runs and why the others do not", () => {
    assert.equal(describeDeviceChoice([{ device: "cuda", skipped: "no CUDA" }, { device: "cpu" }]), "cpu (not used: cuda: no CUDA)");
    assert.equal(describeDeviceChoice([{ device: "webgpu", skipped: "x" }]), "none (not used: webgpu: x)");
  });
});
