/**
 * WebGPU in Node: Dawn's node binding from the `webgpu` npm package (its tarball ships a prebuilt
 * dist/linux-x64/dawn.node, so no install script is needed). The lab's GPU code is written for the
 * browser; this module gives it the two things it takes from the browser's global scope:
 *  - a `GPU` object, passed to requestLabDevice({ gpu }) (no navigator is faked);
 *  - the WebGPU enum objects (GPUBufferUsage, GPUMapMode, ...) that kernels read as globals; only the
 *    missing ones are defined.
 *
 * Dawn runs on Vulkan here. Machines without a GPU have no Vulkan driver of their own, but Debian's
 * chromium package ships SwiftShader's (vk_swiftshader_icd.json next to libvk_swiftshader.so, with the
 * Vulkan loader libvulkan.so.1 beside them). When VK_ICD_FILENAMES is unset and that ICD exists, we
 * point the loader at it. Dawn dlopen()s "libvulkan.so.1" by name; when the system has no Vulkan loader
 * (Debian's libvulkan1 is not installed by default), Chromium's copy is loaded first with RTLD_GLOBAL
 * and RTLD_NODELETE, so Dawn's dlopen by soname finds the library already in the process.
 * (Mesa's lavapipe did not work with Dawn on these machines; SwiftShader does, and it is the same
 * software rasterizer the browser tests run on.)
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { requestLabDevice, type GpuStatus, type LabDevice } from "../gpu/device.ts";
import { BrowserNotFoundError, findChromium } from "./find-browser.ts";

const ICD_FILE = "vk_swiftshader_icd.json";
/** glibc's RTLD_NODELETE (Node's os.constants.dlopen does not list it). */
const RTLD_NODELETE = 0x1000;

/** Where a Chromium install keeps SwiftShader's Vulkan ICD: next to the real browser binary. */
function chromiumIcdCandidates(): string[] {
  const dirs = new Set<string>(["/usr/lib/chromium"]);
  try {
    dirs.add(path.dirname(realpathSync(findChromium())));
  } catch (e) {
    if (!(e instanceof BrowserNotFoundError)) throw e;
  }
  return [...dirs].map((d) => path.join(d, ICD_FILE));
}

/** The SwiftShader Vulkan ICD to use, or undefined when none is installed. */
export function findSwiftShaderIcd(): string | undefined {
  return chromiumIcdCandidates().find((f) => existsSync(f));
}

/** True when some process-wide copy of the Vulkan loader can be opened by name. */
function systemVulkanLoaderPresent(): boolean {
  const dirs = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu", "/lib64"];
  const fromEnv = (process.env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean);
  return [...fromEnv, ...dirs].some((d) => existsSync(path.join(d, "libvulkan.so.1")));
}

/**
 * Loads the Vulkan loader that sits next to `icdFile` into the process (for Dawn's dlopen by soname).
 * process.dlopen expects a Node addon, so it throws "did not self-register" after dlopen succeeded;
 * RTLD_NODELETE keeps the library mapped through the dlclose that follows.
 */
function preloadVulkanLoaderBeside(icdFile: string): boolean {
  const loader = path.join(path.dirname(icdFile), "libvulkan.so.1");
  if (!existsSync(loader)) return false;
  const { RTLD_NOW, RTLD_GLOBAL } = os.constants.dlopen;
  try {
    process.dlopen({ exports: {} }, loader, RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
  } catch (e) {
    if (!/did not self-register/.test(String(e))) return false;
  }
  return true;
}

function defineMissingGlobals(globals: object): void {
  for (const [name, value] of Object.entries(globals)) {
    if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
  }
}

export interface NodeGpu {
  gpu: GPU;
  /** The Vulkan ICD the loader was pointed at (VK_ICD_FILENAMES), if any. */
  icd: string | undefined;
}

let cached: Promise<NodeGpu | { reason: string }> | undefined;

/** Dawn's GPU object for this process (created once), or why there is none. */
export function nodeGpu(): Promise<NodeGpu | { reason: string }> {
  return (cached ??= createNodeGpu());
}

async function createNodeGpu(): Promise<NodeGpu | { reason: string }> {
  let icd = process.env.VK_ICD_FILENAMES;
  if (!icd && process.platform === "linux") {
    icd = findSwiftShaderIcd();
    if (icd) process.env.VK_ICD_FILENAMES = icd;
  }
  if (process.platform === "linux" && icd && !systemVulkanLoaderPresent()) preloadVulkanLoaderBeside(icd);

  let dawn: { create(options: string[]): GPU; globals: object };
  try {
    dawn = (await import("webgpu")) as typeof dawn;
  } catch (e) {
    return { reason: `the webgpu package (Dawn for Node) could not be loaded: ${(e as Error).message}` };
  }
  defineMissingGlobals(dawn.globals);
  return { gpu: dawn.create([]), icd };
}

/**
 * requestLabDevice on Dawn. The CPU status's reason says what is missing (the package, a Vulkan driver)
 * so the CLI can print it.
 */
export async function requestNodeLabDevice(): Promise<{ status: GpuStatus; device?: LabDevice }> {
  const got = await nodeGpu();
  if ("reason" in got) return { status: { kind: "cpu", reason: got.reason } };
  const result = await requestLabDevice({ gpu: got.gpu });
  if (result.status.kind === "cpu") {
    const where = got.icd
      ? `with VK_ICD_FILENAMES=${got.icd}`
      : `and no Vulkan driver was found (install Debian's chromium package for SwiftShader's, or set VK_ICD_FILENAMES)`;
    return { status: { kind: "cpu", reason: `Dawn found no WebGPU adapter ${where}: ${result.status.reason}` } };
  }
  return result;
}

/** The package's version, for reports. */
export function webgpuPackageVersion(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const pkgFile = require.resolve("webgpu/package.json");
    return (JSON.parse(readFileSync(pkgFile, "utf8")) as { version: string }).version;
  } catch {
    return undefined;
  }
}
