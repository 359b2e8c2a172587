/// <reference types="@webgpu/types" />
/**
 * Acquiring a GPUDevice: the one place that knows where WebGPU comes from. In browsers it is
 * `navigator.gpu`; in Node it is Dawn from the npm package `webgpu`. Dawn first tries its default
 * backend (a real GPU: Vulkan, Metal, D3D12); without one it falls back to OpenGL ES on Mesa
 * (llvmpipe), which needs `EGL_PLATFORM=surfaceless` and the `compatibility` feature level.
 * Limits are raised to what the adapter offers (the default device allows only 128 or 256
 * invocations per workgroup and 128 MiB bindings), and `shader-f16` is requested where the adapter
 * has it (f16 weights are then read as f16; Dawn on llvmpipe has no `shader-f16`).
 */

/** The limits the kernels are designed against; requested at the adapter's maximum. */
export const raisedLimits = [
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxStorageBuffersPerShaderStage',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
] as const;

export interface GpuHandle {
  readonly device: GPUDevice;
  /** Where the device came from, e.g. `dawn default`, `dawn opengles (compatibility)`, `navigator.gpu`. */
  readonly source: string;
  readonly limits: Readonly<Record<(typeof raisedLimits)[number], number>>;
}

export type Acquired =
  | { readonly ok: true; readonly gpu: GpuHandle }
  | { readonly ok: false; readonly reason: string };

interface DawnModule {
  create(options: string[]): GPU;
  globals: object;
}

let dawn: Promise<DawnModule | string> | undefined;

/** Loads Dawn once, installing its globals (GPUBufferUsage, …) where they are missing. */
function loadDawn(): Promise<DawnModule | string> {
  dawn ??= (async () => {
    try {
      const m = (await import('webgpu')) as unknown as DawnModule;
      for (const [k, v] of Object.entries(m.globals))
        if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
      return m;
    } catch (e) {
      return `the npm package webgpu does not load: ${e instanceof Error ? e.message : String(e)}`;
    }
  })();
  return dawn;
}

/** The optional features the shaders use, those of them the adapter has. */
const wantedFeatures = (adapter: GPUAdapter): GPUFeatureName[] =>
  adapter.features.has('shader-f16') ? ['shader-f16'] : [];

async function deviceFrom(adapter: GPUAdapter, source: string): Promise<GpuHandle> {
  const limits = {} as Record<(typeof raisedLimits)[number], number>;
  for (const k of raisedLimits) limits[k] = adapter.limits[k];
  const device = await adapter.requestDevice({
    requiredLimits: limits,
    requiredFeatures: wantedFeatures(adapter),
  });
  return { device, source, limits };
}

/** Keeps Dawn instances alive as long as their devices (Dawn tears down with its GPU object). */
const keep: GPU[] = [];

/** Requests a device; undefined adapter → a reason, never a throw. */
export async function acquireDevice(): Promise<Acquired> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const isNode = typeof process !== 'undefined' && process.versions?.node !== undefined;
  if (!isNode) {
    if (!nav?.gpu) return { ok: false, reason: 'navigator.gpu is missing' };
    const adapter = await nav.gpu.requestAdapter();
    if (!adapter) return { ok: false, reason: 'navigator.gpu gave no adapter' };
    return { ok: true, gpu: await deviceFrom(adapter, 'navigator.gpu') };
  }
  const m = await loadDawn();
  if (typeof m === 'string') return { ok: false, reason: m };
  const reasons: string[] = [];
  // A real GPU first, unless told to use the portable path (KVPLAN_WEBGPU=opengles).
  if (process.env.KVPLAN_WEBGPU !== 'opengles') {
    try {
      const gpu = m.create([]);
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      // Dawn reports a CPU fallback adapter (SwiftShader) as such; prefer Mesa's GLES path then.
      if (adapter && !adapter.info.isFallbackAdapter) {
        keep.push(gpu);
        return { ok: true, gpu: await deviceFrom(adapter, 'dawn default') };
      }
      reasons.push(adapter ? 'default backend: only a fallback adapter' : 'default backend: no adapter');
    } catch (e) {
      reasons.push(`default backend: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  process.env.EGL_PLATFORM ??= 'surfaceless';
  try {
    const gpu = m.create(['backend=opengles']);
    const adapter = await gpu.requestAdapter({ featureLevel: 'compatibility' });
    if (adapter) {
      keep.push(gpu);
      return { ok: true, gpu: await deviceFrom(adapter, 'dawn opengles (compatibility)') };
    }
    reasons.push('opengles backend: no adapter (is libEGL.so / Mesa installed?)');
  } catch (e) {
    reasons.push(`opengles backend: ${e instanceof Error ? e.message : String(e)}`);
  }
  return { ok: false, reason: reasons.join('; ') };
}

let shared: Promise<Acquired> | undefined;

/** One device per process, acquired on first use. */
export function sharedDevice(): Promise<Acquired> {
  shared ??= acquireDevice();
  return shared;
}

let validator: Promise<GPUDevice | string> | undefined;

/** Dawn's null backend: compiles WGSL without running it (fast validation with line:col errors). */
export function validationDevice(): Promise<GPUDevice | string> {
  validator ??= (async () => {
    const m = await loadDawn();
    if (typeof m === 'string') return m;
    const gpu = m.create(['backend=null']);
    keep.push(gpu);
    const adapter = await gpu.requestAdapter();
    if (!adapter) return 'the null backend gave no adapter';
    return adapter.requestDevice({ requiredFeatures: wantedFeatures(adapter) });
  })();
  return validator;
}

/** Compiles a WGSL module and returns its error messages (line:col: message); [] when valid. */
export async function validateWgsl(device: GPUDevice, code: string): Promise<string[]> {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const scope = await device.popErrorScope();
  const errors = info.messages
    .filter((m) => m.type === 'error')
    .map((m) => `${m.lineNum}:${m.linePos}: ${m.message}`);
  if (errors.length === 0 && scope) errors.push(scope.message);
  return errors;
}
