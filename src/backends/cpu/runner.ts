import koffi from 'koffi';
import type { CheckedPlan } from '../../dsl/check.ts';
import type { LoweredPlan } from '../../ir/lower.ts';
import { layerStage } from '../../ir/names.ts';
import { float32Tensor, type HostTensor } from '../../ir/tensor.ts';
import type { ModelConfig } from '../../model/config.ts';
import type { HalfDtype } from '../../model/half.ts';
import { loadWeight, storedForm, type Weights } from '../../model/weights.ts';
import { compilePlan } from '../../passes/compile.ts';
import { type CachePart, cachePartTensor } from '../../runtime/cachePart.ts';
import type { CanvasRows, HeadOutput, Program, StepRunner } from '../../runtime/runner.ts';
import { activeFault } from '../fault.ts';
import { type CompiledLibrary, compileLibrary, openLibrary } from './compiler.ts';
import { bindPrimitives, compilePrimitives, Dtype16 } from './primitives.ts';
import { CpuProbe, type WeightLookup } from './probe.ts';
import { type CpuManifest, renderC, type StageEntry } from './render.ts';

export interface CpuBuild {
  readonly lowered: LoweredPlan;
  readonly source: string;
  readonly manifest: CpuManifest;
  readonly library: string;
  readonly cached: boolean;
  /** How to load (and, when the cached entry is corrupt, rebuild) the library. */
  readonly compiled: CompiledLibrary;
  /** The primitives library the plan's library is linked against (its `against`). */
  readonly primitives: CompiledLibrary;
}

/**
 * Flags of a plan's own unit: it only sequences calls into the primitives and runs pointwise
 * loops, so -O2 (which vectorises those loops) does as well as -O3 and compiles faster; it has no
 * OpenMP of its own. See docs/perf.md, "Start-up and compile latency".
 */
export const PLAN_FLAGS: readonly string[] = ['-O2', '-march=native', '-fPIC', '-shared', '-std=c11'];

/**
 * Compiles a plan for the CPU: passes for the `cpu` target, C rendering, and the system compiler.
 * The primitives are a library of their own, built once (see compilePrimitives); only the plan's
 * generated unit is compiled per plan, linked against them.
 */
export function buildCpu(plan: CheckedPlan, config: ModelConfig, maxCanvas: number): CpuBuild {
  const { lowered, state } = compilePlan(plan, config, { target: 'cpu', canvas: maxCanvas });
  if (!state.kernels || !state.memory) throw new Error('the pipeline produced no kernels');
  const fault = activeFault();
  const { source, manifest } = renderC(config, state.phases, state.kernels, state.memory, maxCanvas, fault);
  const primitives = compilePrimitives({}, fault);
  const compiled = compileLibrary(source, { flags: PLAN_FLAGS, against: primitives });
  return { lowered, source, manifest, library: compiled.path, cached: compiled.cached, compiled, primitives };
}

/** The functions every plan library defines besides its stages (checked when it is loaded). */
const RUNNER_SYMBOLS = [
  'kvp_slot',
  'kvp_prepare_slot',
  'kvp_packed',
  'kv_set_threads',
  'kvp_set_dtype',
  'kvp_loaded',
];

/** Runs a plan's compiled step functions through koffi, on one canvas of at most maxCanvas rows. */
export class CpuRunner implements StepRunner {
  private readonly stageFns = new Map<string, (n: Int32Array) => void>();
  private readonly floats = new Map<string, Float32Array>();
  /**
   * Bytes of the weights as loaded into their slots: 16-bit GEMM weights at 2 a weight, everything
   * else at 4. A GEMM-only weight is then held in its packed copy alone (see kvp_prepare_slot).
   */
  readonly weightBytes: number = 0;
  /** GEMM weight slots that hold 16-bit weights, and their dtype. */
  private readonly halves = new Map<string, HalfDtype>();
  private readonly ints = new Map<string, Int32Array>();
  private readonly arena: Float32Array;
  private readonly sizes: Int32Array;
  /** Where in the arena the hidden state of the canvas sits between stages. */
  private hAt: number | undefined;
  private readonly packed: (i: number) => unknown;
  private compiledProbe: CpuProbe | undefined;
  private readonly records: Float32Array[] = [];

  constructor(
    private readonly build: CpuBuild,
    weights: Weights,
    private readonly L: number,
    threads = 0,
  ) {
    const { manifest } = build;
    if (L > manifest.maxCanvas)
      throw new Error(`canvas ${L} exceeds the compiled maximum ${manifest.maxCanvas}`);
    const stageFns = Object.values(manifest.phases).flatMap((stages) => stages.map((st) => st.fn));
    const lib = openLibrary(build.compiled, [...RUNNER_SYMBOLS, ...stageFns]);
    const slot = lib.func('void *kvp_slot(int i, int64_t bytes)');
    const prepare = lib.func('int kvp_prepare_slot(int i)');
    this.packed = lib.func('void *kvp_packed(int i)');
    lib.func('void kv_set_threads(int n)')(threads);
    const setDtype = lib.func('void kvp_set_dtype(int i, int d)');
    for (const s of manifest.slots) {
      const form = s.kind === 'weight' ? storedForm(weights, s.name) : undefined;
      if (s.kind === 'weight' && !form) throw new Error(`the model has no weight ${s.name}`);
      // A weight stored in 16 bits stays so where a kernel reads it as it is: GEMMs (packed, read
      // by kv_gemm16) and the embedding gather.
      const half = s.packed || s.rowMajor ? form?.half : undefined;
      const bytes = s.elements * (half ? 2 : 4);
      const ptr = slot(s.index, bytes);
      if (!ptr) throw new Error(`could not allocate ${bytes} bytes for ${s.name}`);
      const buffer = koffi.view(ptr, bytes);
      if (s.kind === 'weight') (this as { weightBytes: number }).weightBytes += bytes;
      if (s.kind === 'weight') setDtype(s.index, half ? Dtype16[half] : 0);
      // Packing frees the loaded copy of a weight only GEMMs read: no view of it is kept.
      const transient = s.packed === true && !s.rowMajor;
      if (half) {
        loadWeight(weights, s.name, new Uint16Array(buffer));
        this.halves.set(s.name, half);
      } else if (s.kind === 'list' || s.kind === 'tokens' || s.kind === 'blocks' || s.kind === 'seqs')
        this.ints.set(s.name, new Int32Array(buffer));
      else {
        const floats = new Float32Array(buffer);
        if (!transient) this.floats.set(s.name, floats);
        if (s.kind === 'weight') loadWeight(weights, s.name, floats);
      }
      if (s.packed && !prepare(s.index)) throw new Error(`packing ${s.name} failed (out of memory)`);
    }
    lib.func('void kvp_loaded(void)')();
    for (const fn of stageFns) this.stageFns.set(fn, lib.func(`void ${fn}(const int32_t *N)`));
    this.arena = this.floats.get('arena') as Float32Array;
    this.sizes = new Int32Array(manifest.sizes.length);
  }

  private entry(phase: string, stage: string): StageEntry {
    const e = this.build.manifest.phases[phase]?.find((s) => s.name === stage);
    if (!e) throw new Error(`phase ${phase} has no stage ${stage}`);
    return e;
  }

  private setList(name: string, list: Int32Array): void {
    const view = this.ints.get(`list:${name}`);
    if (!view) return; // a list no stage of any phase reads
    view.set(list);
    const k = this.build.manifest.sizes.indexOf(`#${name}`);
    if (k >= 0) this.sizes[k] = list.length;
  }

  /** Runs a stage, first moving the carried hidden state to where this phase's layout wants it. */
  private run(phase: string, stage: string, hAt: number | undefined): StageEntry {
    const e = this.entry(phase, stage);
    const want = e.inputs.h;
    const width = this.build.lowered.config.dModel * this.L;
    if (hAt !== undefined && want !== undefined && want !== hAt)
      this.arena.copyWithin(want, hAt, hAt + width);
    (this.stageFns.get(e.fn) as (n: Int32Array) => void)(this.sizes);
    return e;
  }

  /**
   * The hidden state as it is now, copied into the buffer of its place in the step (`record`: 0
   * after the embedding, l + 1 after layer l): the arena moves on, and a fresh copy per layer and
   * step was most of what score-driven plans gave the garbage collector.
   */
  private hidden(record: number): HostTensor {
    const d = this.build.lowered.config.dModel;
    const at = this.carried();
    let buf = this.records[record];
    if (!buf) {
      buf = new Float32Array(this.L * d);
      this.records[record] = buf;
    }
    buf.set(this.arena.subarray(at, at + this.L * d));
    return float32Tensor([this.L, d], buf);
  }

  private carried(): number {
    if (this.hAt === undefined) throw new Error('a layer ran before the embedding');
    return this.hAt;
  }

  embed(program: Program, canvas: CanvasRows, read: boolean): HostTensor | undefined {
    this.sizes.fill(0);
    this.sizes[0] = this.L;
    (this.ints.get('tokens') as Int32Array).set(canvas.tokens);
    this.ints.get('blocks')?.set(canvas.blocks);
    this.ints.get('seqs')?.set(canvas.seqs);
    this.hAt = this.run(program, 'embed', undefined).outputs.h;
    return read ? this.hidden(0) : undefined;
  }

  layer(
    program: Program,
    layer: number,
    lists: ReadonlyMap<string, Int32Array>,
    read: boolean,
  ): HostTensor | undefined {
    // A list not given this call is empty, not the one an earlier call left.
    this.sizes.fill(0, 1);
    for (const [name, list] of lists) this.setList(name, list);
    this.hAt = this.run(program, layerStage(layer), this.carried()).outputs.h;
    return read ? this.hidden(layer + 1) : undefined;
  }

  head(program: Program, out: Int32Array): HeadOutput {
    this.setList('out', out);
    const head = this.run(program, 'head', this.carried());
    const { vocab: V, maskTokenId } = this.build.lowered.config;
    const at = head.outputs.logits as number;
    // A view of the arena: a step's logits of a real vocabulary are tens of megabytes, and a fresh
    // copy each step (in float64, twice the bytes) kept the collector busy on the kernels' cores.
    const logits = this.arena.subarray(at, at + out.length * V);
    const stats = new Float64Array(3 * out.length);
    const argmax = new Int32Array(out.length);
    // The mask is a token of the vocabulary: the model's configuration is refused otherwise.
    bindPrimitives(this.build.primitives).softmaxStats(out.length, V, logits, maskTokenId, stats, argmax);
    return { logits: float32Tensor([out.length, V], logits), stats: { stats, argmax } };
  }

  /** Score probes on the same library's primitives and packed weights (made on first use). */
  get probe(): CpuProbe {
    if (!this.compiledProbe) {
      const prims = bindPrimitives(this.build.primitives);
      const slots = new Map(this.build.manifest.slots.map((s) => [s.name, s]));
      // One view per weight, made once: a view of native memory counts as external memory to V8,
      // and a new 4 MB view per probe call set off a full collection every few layers.
      const views = new Map<string, ReturnType<WeightLookup>>();
      const view = (name: string): ReturnType<WeightLookup> => {
        const slot = slots.get(name);
        const floats = this.floats.get(name);
        const half = this.halves.get(name);
        if (slot?.kind !== 'weight') throw new Error(`the compiled plan has no weight ${name}`);
        const ptr = slot.shape?.length === 2 ? this.packed(slot.index) : undefined;
        if (!ptr) return { floats };
        const [n, k] = slot.shape as [number, number];
        if (half) {
          const size = prims.packedSize16(n, k);
          return { packed16: { bits: new Uint16Array(koffi.view(ptr, size * 2)), dtype: Dtype16[half] } };
        }
        return { floats, packed: new Float32Array(koffi.view(ptr, prims.packedSize(n, k) * 4)) };
      };
      this.compiledProbe = new CpuProbe(prims, this.build.lowered.config, (name) => {
        let v = views.get(name);
        if (!v) {
          v = view(name);
          views.set(name, v);
        }
        return v;
      });
    }
    return this.compiledProbe;
  }

  cachePart(part: CachePart, layer: number): HostTensor | undefined {
    return cachePartTensor(part, layer, this.build.lowered.config, this.L, (name, n) =>
      this.floats.get(name)?.subarray(0, n),
    );
  }
}
