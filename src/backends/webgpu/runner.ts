import type { CheckedPlan } from '../../dsl/check.ts';
import { planUses } from '../../dsl/semantics/uses.ts';
import type { LoweredPlan } from '../../ir/lower.ts';
import { layerStage } from '../../ir/names.ts';
import { float32Tensor, type HostTensor } from '../../ir/tensor.ts';
import type { Dim } from '../../ir/types.ts';
import type { ModelConfig } from '../../model/config.ts';
import { floatsOf, isHalf, storedForm, type Tensor, type Weights } from '../../model/weights.ts';
import { compilePlan } from '../../passes/compile.ts';
import { type CachePart, cachePartResource, cachePartRow, cachePartTensor } from '../../runtime/cachePart.ts';
import type { CanvasRows, HeadOutput, Program, StepRunner } from '../../runtime/runner.ts';
import { deviceStatsFit, unpackStats } from '../deviceStats.ts';
import { activeFault, type Fault } from '../fault.ts';
import { sharedDevice } from './device.ts';
import {
  type BufferRole,
  type BufferSpec,
  bufferBytes,
  evalSize,
  MASK,
  renderWgsl,
  type WgslManifest,
  type WgslStage,
} from './render.ts';
import {
  type ShaderName,
  STATS_WG,
  shaderDef,
  uniformBytes,
  type WeightFormat,
  wgslSource,
} from './shaders.ts';

export interface WebGpuBuild {
  readonly lowered: LoweredPlan;
  readonly manifest: WgslManifest;
  /** The K/V cache parts the plan's drift scores read on the host: mirrored after each layer. */
  readonly mirrored: readonly CachePart[];
  /** The armed fault the shaders are built with (test only); undefined in every normal build. */
  readonly fault?: Fault;
}

/**
 * Compiles a plan for WebGPU: passes for the `wgsl` target, then the dispatch plan. `format` says
 * how each weight matrix is stored on the GPU (`weightFormats`); without it, every weight is f32.
 */
export function buildWebGpu(
  plan: CheckedPlan,
  config: ModelConfig,
  maxCanvas: number,
  format?: (weight: string) => WeightFormat,
): WebGpuBuild {
  const { lowered, state } = compilePlan(plan, config, { target: 'wgsl', canvas: maxCanvas });
  if (!state.kernels || !state.memory) throw new Error('the pipeline produced no kernels or memory plan');
  const drift = { k: 'key_drift', v: 'value_drift', hidden: 'hidden_drift' } as const;
  return {
    lowered,
    manifest: renderWgsl(config, state.phases, state.kernels, state.memory, maxCanvas, format),
    mirrored: (['k', 'v', 'hidden'] as const).filter((part) => planUses(plan.plan, new Set([drift[part]]))),
    fault: activeFault(),
  };
}

/**
 * How a device keeps each weight of a model, from the dtype the model stores it in: bf16 as its
 * bits (any adapter), f16 as f16 where the device has `shader-f16`, anything else as f32. No
 * tensor is read to learn it.
 */
export function weightFormats(weights: Weights, device: GPUDevice): (weight: string) => WeightFormat {
  const f16 = device.features.has('shader-f16');
  const known = new Map<string, WeightFormat>();
  return (name) => {
    let format = known.get(name);
    if (format === undefined) {
      const half = storedForm(weights, name)?.half;
      format = half === 'bf16' || (half === 'f16' && f16) ? half : 'f32';
      known.set(name, format);
    }
    return format;
  };
}

/** What a weight buffer is filled with: the tensor's 16-bit bits in its format (padded to whole words), else f32. */
function weightData(s: BufferSpec, w: Tensor): Float32Array | Uint16Array {
  if (!s.format) return new Float32Array(floatsOf(w));
  if (!isHalf(w) || w.half !== s.format)
    throw new Error(
      `weight ${s.weight} is built as ${s.format}, but the model stores it as ${isHalf(w) ? w.half : 'floats'}`,
    );
  if (w.bits.length % 2 === 0) return w.bits;
  const padded = new Uint16Array(w.bits.length + 1);
  padded.set(w.bits);
  return padded;
}

/** Pipelines by device and WGSL text: a shader built with a fault never stands in for the normal one. */
const pipelineCache = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/** The compute pipeline of a primitive on a device (with a test-only fault), created once. */
export function pipelineFor(device: GPUDevice, name: ShaderName, fault?: Fault): GPUComputePipeline {
  let m = pipelineCache.get(device);
  if (!m) {
    m = new Map();
    pipelineCache.set(device, m);
  }
  const code = wgslSource(shaderDef(name), fault);
  let p = m.get(code);
  if (!p) {
    const module = device.createShaderModule({ code, label: name });
    p = device.createComputePipeline({
      layout: 'auto',
      compute: { module, entryPoint: 'main' },
      label: name,
    });
    m.set(code, p);
  }
  return p;
}

/** Workgroup counts for a dispatch; 1-D launches over 65535 workgroups fold into y. */
export function workgroups(name: ShaderName, x: number, y: number): [number, number] {
  const [wx, wy] = shaderDef(name).workgroup;
  let gx = Math.ceil(x / wx);
  let gy = Math.ceil(y / wy);
  if (gx > 65535 && gy === 1) {
    gy = Math.ceil(gx / 65535);
    gx = 65535;
  }
  return [gx, gy];
}

/** Fills a uniform buffer's bytes from the dispatch's params. */
export function uniformData(
  name: ShaderName,
  params: readonly ({ u: readonly [number, ...Dim[]] } | { f: number })[],
  size: (d: Dim) => number,
): ArrayBuffer {
  const def = shaderDef(name);
  const buf = new ArrayBuffer(uniformBytes(def));
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  params.forEach((p, i) => {
    if ('f' in p) f[i] = p.f;
    else u[i] = evalSize(p.u, size);
  });
  return buf;
}

/**
 * Runs a plan's dispatch plan on a GPUDevice, one canvas of at most maxCanvas rows. Mirrors
 * CpuRunner: weights uploaded once, caches persistent and poisoned with NaN, index lists written
 * each layer, one submit per stage; the hidden state (for the scores) and the logits are read back
 * with mapAsync, and the K/V cache parts the drift scores read mirrored on the host after each
 * layer (for cachePart).
 */
export class WebGpuRunner implements StepRunner {
  private readonly buffers = new Map<string, GPUBuffer>();
  private readonly uniforms = new Map<string, GPUBuffer>();
  private readonly sizes = new Map<string, number>();
  /** Host copies of cache parts by resource name (`kv.v.3`). */
  private readonly mirror = new Map<string, Float32Array>();
  private readonly owned: GPUBuffer[] = [];
  /**
   * Bytes of the storage buffers created, by role: `slot` is the memory plan's peak (all the
   * activations), the rest fixed parts. Uniforms (one per dispatch) and readback staging
   * buffers are not counted.
   */
  readonly allocated: Partial<Record<BufferRole, number>> = {};
  /**
   * Output name → the buffer the last stage run left it in. The runtime may run one layer's
   * programs one after the other (sequences of a batch in different phases), so a stage's carried
   * input can be in another program's slot; it is copied into this program's slot then.
   */
  private left = new Map<string, string>();
  /** Where `softmax_stats` leaves each head's statistics and argmax (see `head`). */
  private stats: GPUBuffer | undefined;

  constructor(
    private readonly build: WebGpuBuild,
    weights: Weights,
    private readonly L: number,
    private readonly device: GPUDevice,
  ) {
    const { manifest } = build;
    if (L > manifest.maxCanvas)
      throw new Error(`canvas ${L} exceeds the compiled maximum ${manifest.maxCanvas}`);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    for (const s of manifest.buffers) {
      const size = bufferBytes(s);
      const b = device.createBuffer({ size, usage, label: s.key });
      this.allocated[s.role] = (this.allocated[s.role] ?? 0) + size;
      this.owned.push(b);
      this.buffers.set(s.key, b);
      let init: Float32Array | Int32Array | Uint16Array | undefined;
      if (s.role === 'weight') {
        const w = weights.get(s.weight as string);
        if (!w) throw new Error(`the model has no weight ${s.weight}`);
        const n = isHalf(w) ? w.bits.length : w.data.length;
        if (n !== s.elements) throw new Error(`weight ${s.weight} has ${n} values`);
        // Kept in 16 bits when the build says so; else widened here, one tensor at a time.
        init = weightData(s, w);
      } else if (s.role === 'rope') {
        const { theta, hd } = s.rope as { theta: number; hd: number };
        const half = hd / 2;
        init = new Float32Array(s.elements);
        for (let p = 0; p < manifest.maxCanvas; p++)
          for (let i = 0; i < half; i++) {
            const a = p * theta ** ((-2 * i) / hd);
            init[(p * half + i) * 2] = Math.cos(a);
            init[(p * half + i) * 2 + 1] = Math.sin(a);
          }
      } else if (s.role === 'persistent' || s.role === 'slot') {
        // Poisoned, so that reading what no kernel wrote shows up as NaN.
        init = new Float32Array(s.elements).fill(Number.NaN);
      }
      if (init) device.queue.writeBuffer(b, 0, init);
    }
    const c = build.lowered.config;
    for (const r of build.lowered.layers)
      for (const part of build.mirrored) {
        const name = cachePartResource(part, r.layer);
        const width = cachePartRow(part, c).reduce((a, b) => a * b, 1);
        if (this.buffers.has(`res:${name}`))
          this.mirror.set(name, new Float32Array(L * width).fill(Number.NaN));
      }
  }

  release(): void {
    for (const b of this.owned) b.destroy();
    for (const b of this.uniforms.values()) b.destroy();
    this.owned.length = 0;
    this.uniforms.clear();
  }

  private stage(phase: string, stage: string): WgslStage {
    const e = this.build.manifest.phases[phase]?.find((s) => s.name === stage);
    if (!e) throw new Error(`phase ${phase} has no stage ${stage}`);
    return e;
  }

  private setInts(key: string, data: Int32Array, at = 0): void {
    const b = this.buffers.get(key);
    if (b && data.length > 0) this.device.queue.writeBuffer(b, at * 4, data);
  }

  private setList(name: string, list: Int32Array): void {
    this.setInts(`list:${name}`, list);
    this.sizes.set(name, list.length);
  }

  private size = (d: Dim): number => {
    if (typeof d === 'number') return d;
    if (d === 'L') return this.L;
    if (d.startsWith('#')) return this.sizes.get(d.slice(1)) ?? 0;
    throw new Error(`unknown dimension ${d}`);
  };

  /** Runs one stage; reads back the named outputs (rows × width floats each) and, after a layer, its mirrored cache parts. */
  private async run(
    phase: string,
    stageName: string,
    read: readonly (readonly [string, number])[],
    kvLayer?: number,
    /** Dispatches after the stage's own, in its last pass, and what they leave to read back. */
    after?: (
      pass: GPUComputePassEncoder,
      output: (name: string) => GPUBuffer,
    ) => [string, GPUBuffer, number][],
  ): Promise<Map<string, Float32Array>> {
    const st = this.stage(phase, stageName);
    const device = this.device;
    const resolve = (key: string): GPUBuffer => {
      const b = this.buffers.get(key);
      if (!b) throw new Error(`no buffer ${key}`);
      return b;
    };
    device.pushErrorScope('validation');
    const enc = device.createCommandEncoder();
    const sources = new Set(Object.keys(st.inputs).map((name) => this.left.get(name)));
    for (const [name, key] of Object.entries(st.inputs)) {
      const at = this.left.get(name);
      if (at === undefined) throw new Error(`stage ${stageName} runs before a stage leaving ${name}`);
      if (at === key) continue;
      // Carried values trading buffers would need a temporary; a phase carries only the hidden state.
      if (sources.has(key)) throw new Error(`stage ${stageName}: ${name} would overwrite a carried value`);
      const [src, dst] = [resolve(at), resolve(key)];
      enc.copyBufferToBuffer(src, 0, dst, 0, Math.min(src.size, dst.size));
    }
    this.left = new Map(Object.entries(st.outputs));
    let pass: GPUComputePassEncoder | undefined;
    const endPass = () => {
      pass?.end();
      pass = undefined;
    };
    st.dispatches.forEach((d, i) => {
      if (d.op === 'copy' || d.op === 'clear') {
        endPass();
        const bytes = evalSize(d.floats, this.size) * 4;
        if (bytes === 0) return;
        if (d.op === 'copy') enc.copyBufferToBuffer(resolve(d.src), 0, resolve(d.dst), 0, bytes);
        else enc.clearBuffer(resolve(d.dst), 0, bytes);
        return;
      }
      const items = [evalSize(d.items[0], this.size), evalSize(d.items[1], this.size)] as const;
      if (items[0] === 0 || items[1] === 0) return;
      pass ??= enc.beginComputePass();
      this.dispatch(pass, `${phase}/${stageName}/${i}`, d.shader, d.params, d.bindings.map(resolve), items);
    });
    const output = (n: string): GPUBuffer => {
      const key = st.outputs[n];
      if (key === undefined) throw new Error(`stage ${stageName} has no output ${n}`);
      return resolve(key);
    };
    const reads: [string, GPUBuffer, number][] = read.map(([n, floats]) => [n, output(n), floats]);
    if (after) {
      pass ??= enc.beginComputePass();
      reads.push(...after(pass, output));
    }
    endPass();
    const mirrors = (
      kvLayer === undefined ? [] : this.build.mirrored.map((part) => cachePartResource(part, kvLayer))
    )
      .map((name) => [name, this.mirror.get(name)] as const)
      .filter((m): m is readonly [string, Float32Array] => m[1] !== undefined);
    for (const [name, m] of mirrors) reads.push([name, resolve(`res:${name}`), m.length]);
    const total = reads.reduce((s, [, , n]) => s + n, 0);
    const staging =
      total > 0
        ? device.createBuffer({ size: total * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
        : undefined;
    let off = 0;
    for (const [, b, n] of reads) {
      if (n > 0) enc.copyBufferToBuffer(b, 0, staging as GPUBuffer, off * 4, n * 4);
      off += n;
    }
    device.queue.submit([enc.finish()]);
    const error = await device.popErrorScope();
    if (error) throw new Error(`WebGPU ${phase}/${stageName}: ${error.message}`);
    let all = new Float32Array(0);
    if (staging) {
      await staging.mapAsync(GPUMapMode.READ);
      all = new Float32Array(staging.getMappedRange().slice(0));
      staging.unmap();
      staging.destroy();
    } else await device.queue.onSubmittedWorkDone();
    // Every read is answered, an empty one too: a head of no rows has logits of no rows.
    const data = new Map<string, Float32Array>();
    off = 0;
    for (const [n, , k] of reads) {
      data.set(n, all.subarray(off, off + k));
      off += k;
    }
    for (const [name, m] of mirrors) m.set(data.get(name) as Float32Array);
    return data;
  }

  /** Encodes one dispatch of a shader over `items` work items, its uniform buffer kept under `ukey`. */
  private dispatch(
    pass: GPUComputePassEncoder,
    ukey: string,
    shader: ShaderName,
    params: Parameters<typeof uniformData>[1],
    buffers: readonly GPUBuffer[],
    items: readonly [number, number],
  ): void {
    const device = this.device;
    let ub = this.uniforms.get(ukey);
    if (!ub) {
      ub = device.createBuffer({
        size: uniformBytes(shaderDef(shader)),
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      this.uniforms.set(ukey, ub);
    }
    device.queue.writeBuffer(ub, 0, uniformData(shader, params, this.size));
    const pipeline = pipelineFor(device, shader, this.build.fault);
    const group = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: ub } },
        ...buffers.map((buffer, j) => ({ binding: j + 1, resource: { buffer } })),
      ],
    });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(...workgroups(shader, items[0], items[1]));
  }

  private hidden(data: Float32Array | undefined): HostTensor | undefined {
    if (!data) return undefined;
    return { shape: [this.L, this.build.lowered.config.dModel], data: new Float64Array(data) };
  }

  async embed(program: Program, canvas: CanvasRows, read: boolean): Promise<HostTensor | undefined> {
    this.setInts('tokens', canvas.tokens);
    this.setInts(MASK, canvas.blocks);
    this.setInts(MASK, canvas.seqs, this.build.manifest.maxCanvas);
    return this.hidden((await this.run(program, 'embed', read ? this.readH() : [])).get('h'));
  }

  async layer(
    program: Program,
    layer: number,
    lists: ReadonlyMap<string, Int32Array>,
    read: boolean,
  ): Promise<HostTensor | undefined> {
    // A list not given this call is empty, not the one an earlier call left.
    this.sizes.clear();
    for (const [name, list] of lists) this.setList(name, list);
    const data = await this.run(program, layerStage(layer), read ? this.readH() : [], layer);
    return this.hidden(data.get('h'));
  }

  /**
   * The logits of the rows `out`, and their softmax statistics computed on the device in the same
   * submission (`softmax_stats`): reading them back is 16 bytes a row, where computing them on the
   * host is a pass over rows × vocab in JavaScript. The logits stay on the device unless asked for.
   */
  async head(program: Program, out: Int32Array, logits = true): Promise<HeadOutput> {
    this.setList('out', out);
    const { vocab: V, maskTokenId } = this.build.lowered.config;
    const n = out.length;
    const stats = n > 0 && deviceStatsFit(V) ? this.statsBuffer() : undefined;
    const read: [string, number][] = logits || !stats ? [['logits', n * V]] : [];
    const data = await this.run(program, 'head', read, undefined, (pass, output) => {
      if (!stats) return [];
      const params = [n, V, maskTokenId].map((u) => ({ u: [u] as [number] }));
      this.dispatch(
        pass,
        'head/stats',
        'softmax_stats',
        params,
        [output('logits'), stats],
        [n * STATS_WG, 1],
      );
      return [['stats', stats, 4 * n]];
    });
    const values = data.get('logits');
    const rows = data.get('stats');
    return {
      ...(values ? { logits: float32Tensor([n, V], values) } : {}),
      ...(rows ? { stats: unpackStats(rows) } : {}),
    };
  }

  /** The buffer `softmax_stats` writes (4 floats a row), for a whole canvas: made at the first head. */
  private statsBuffer(): GPUBuffer {
    if (!this.stats) {
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
      this.stats = this.device.createBuffer({ size: 16 * Math.max(1, this.L), usage, label: 'stats' });
      this.owned.push(this.stats);
    }
    return this.stats;
  }

  private readH(): [string, number][] {
    return [['h', this.L * this.build.lowered.config.dModel]];
  }

  cachePart(part: CachePart, layer: number): HostTensor | undefined {
    return cachePartTensor(part, layer, this.build.lowered.config, this.L, (name) => this.mirror.get(name));
  }
}

/** The WebGPU runner factory on the process's shared device; throws with the reason when there is none. */
export async function webGpuRunnerFactory(): Promise<
  (plan: CheckedPlan, config: ModelConfig, weights: Weights, L: number) => (L: number) => StepRunner
> {
  const acq = await sharedDevice();
  if (!acq.ok) throw new Error(`no WebGPU adapter (${acq.reason})`);
  return (plan, config, weights, L) => {
    const build = buildWebGpu(plan, config, L, weightFormats(weights, acq.gpu.device));
    return (n) => new WebGpuRunner(build, weights, n, acq.gpu.device);
  };
}
