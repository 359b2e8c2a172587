/**
 * Writes what bench/gpu/harness.py replays on an NVIDIA GPU without Node: every driver call of the
 * PTX checks (test/backends/cuda-ptx/checks.ts) as made against the JS emulator of the kernels —
 * allocations, uploads, launches with their packed arguments, downloads with the values the GPU
 * must reproduce and the derived bound it must stay within — plus the PTX files and the
 * benchmark shapes.
 *
 *   npx tsx bench/gpu/prepare.ts [dir]    (default .gpu/cases)
 *
 * Output: `cases.json` (the call traces, device pointers as allocation ids + offsets), `cases.bin`
 * (every uploaded and expected array, 16-byte aligned), one `<kernel>.ptx` per kernel.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  ATT_PAIRS,
  GEMM_PATHS,
  GEMM_TILE,
  generateKernel,
} from '../../src/backends/cuda-ptx/kernels/index.ts';
import type { CudaDevice, Dim3, PackedParams } from '../../src/backends/cuda-ptx/launch.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import type { CachePart } from '../../src/runtime/cachePart.ts';
import type { CanvasRows, Program, StepRunner } from '../../src/runtime/runner.ts';
import { float32Budget } from '../../src/runtime/verify.ts';
import { checkPlan, checkPrimitive, primitiveCases } from '../../test/backends/cuda-ptx/checks.ts';
import { declaredParams, EmulatedDevice } from '../../test/backends/cuda-ptx/emulator.ts';

type Ptr = readonly [id: number, offset: number];
type Op =
  | { op: 'alloc'; id: number; bytes: number }
  | { op: 'free'; id: number }
  | { op: 'load'; kernel: string; shared: number }
  | { op: 'upload'; dst: Ptr; data: [number, number] }
  | { op: 'fill'; dst: Ptr; byte: number; bytes: number }
  | { op: 'copy'; dst: Ptr; src: Ptr; bytes: number }
  | {
      op: 'launch';
      kernel: string;
      grid: Dim3;
      block: Dim3;
      shared: number;
      params: string;
      offsets: readonly number[];
      relocs: { at: number; ptr: Ptr }[];
    }
  | { op: 'download'; src: Ptr; bytes: number; label?: string; ref?: [number, number]; bound?: number };

/** The binary side file: arrays appended at 16-byte boundaries, referenced as [offset, bytes]. */
class Blob {
  private readonly parts: Uint8Array[] = [];
  private size = 0;
  add(view: ArrayBufferView): [number, number] {
    const at = Math.ceil(this.size / 16) * 16;
    if (at > this.size) this.parts.push(new Uint8Array(at - this.size));
    this.parts.push(new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice());
    this.size = at + view.byteLength;
    return [at, view.byteLength];
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out;
  }
}

/** A CudaDevice that forwards to the emulator and writes down every call, pointers made relocatable. */
class RecordingDevice implements CudaDevice {
  readonly computeCapability: readonly [number, number];
  readonly ops: Op[] = [];
  private readonly allocs: { id: number; base: bigint; bytes: number }[] = [];
  /** What each download read from the emulator. */
  readonly read = new Map<Op, Float32Array>();
  private nextId = 0;

  constructor(
    private readonly inner: EmulatedDevice,
    private readonly blob: Blob,
    private readonly ptx: Map<string, string>,
  ) {
    this.computeCapability = inner.computeCapability;
  }

  private ptr(p: bigint): Ptr {
    const a = this.allocs.find((x) => p >= x.base && p < x.base + BigInt(Math.max(x.bytes, 1)));
    if (!a) throw new Error(`pointer ${p.toString(16)} is outside every allocation`);
    return [a.id, Number(p - a.base)];
  }

  loadKernel(ptx: string, name: string, sharedBytes: number): unknown {
    const have = this.ptx.get(name);
    if (have !== undefined && have !== ptx) throw new Error(`two different texts of kernel ${name}`);
    this.ptx.set(name, ptx);
    this.ops.push({ op: 'load', kernel: name, shared: sharedBytes });
    return { name, fn: this.inner.loadKernel(ptx, name) };
  }
  /** The replay keeps its modules loaded until it exits: nothing to record. */
  unloadKernel(): void {
    this.inner.unloadKernel();
  }
  alloc(bytes: number): bigint {
    const base = this.inner.alloc(bytes);
    const id = this.nextId++;
    this.allocs.push({ id, base, bytes });
    this.ops.push({ op: 'alloc', id, bytes });
    return base;
  }
  free(ptr: bigint): void {
    const i = this.allocs.findIndex((a) => a.base === ptr);
    this.ops.push({ op: 'free', id: (this.allocs[i] as { id: number }).id });
    this.allocs.splice(i, 1);
    this.inner.free(ptr);
  }
  upload(dst: bigint, src: ArrayBufferView): void {
    this.ops.push({ op: 'upload', dst: this.ptr(dst), data: this.blob.add(src) });
    this.inner.upload(dst, src);
  }
  download(dst: ArrayBufferView, src: bigint): void {
    this.inner.download(dst, src);
    const op: Op = { op: 'download', src: this.ptr(src), bytes: dst.byteLength };
    this.ops.push(op);
    this.read.set(op, new Float32Array(dst.buffer.slice(dst.byteOffset, dst.byteOffset + dst.byteLength)));
  }
  copy(dst: bigint, src: bigint, bytes: number): void {
    this.ops.push({ op: 'copy', dst: this.ptr(dst), src: this.ptr(src), bytes });
    this.inner.copy(dst, src, bytes);
  }
  fill(dst: bigint, byte: number, bytes: number): void {
    this.ops.push({ op: 'fill', dst: this.ptr(dst), byte, bytes });
    this.inner.fill(dst, byte, bytes);
  }
  launch(fn: unknown, grid: Dim3, block: Dim3, sharedBytes: number, params: PackedParams): void {
    const k = fn as { name: string; fn: unknown };
    const view = new DataView(params.bytes.buffer, params.bytes.byteOffset, params.bytes.byteLength);
    const relocs: { at: number; ptr: Ptr }[] = [];
    declaredParams(this.ptx.get(k.name) as string).forEach((p, i) => {
      const at = params.offsets[i] as number;
      if (p.type !== 'u64') return;
      const v = view.getBigUint64(at, true);
      if (v !== 0n) relocs.push({ at, ptr: this.ptr(v) });
    });
    this.ops.push({
      op: 'launch',
      kernel: k.name,
      grid,
      block,
      shared: sharedBytes,
      params: Buffer.from(params.bytes).toString('hex'),
      offsets: params.offsets,
      relocs,
    });
    this.inner.launch(k.fn, grid, block, sharedBytes, params);
  }
  synchronize(): void {}
  close(): void {}

  /** The downloads recorded so far, to attach expectations to. */
  downloads(): Extract<Op, { op: 'download' }>[] {
    return this.ops.filter((o): o is Extract<Op, { op: 'download' }> => o.op === 'download');
  }
}

interface Case {
  readonly name: string;
  readonly kind: 'primitive' | 'plan';
  readonly ops: readonly Op[];
}

/**
 * A primitive: every output download must be within the derived bound of its independent float64
 * reference (the same check as runner.test.ts).
 */
function primitive(c: ReturnType<typeof primitiveCases>[number], blob: Blob, ptx: Map<string, string>): Case {
  const rec = new RecordingDevice(new EmulatedDevice(), blob, ptx);
  const results = checkPrimitive(c, rec);
  rec.downloads().forEach((d, i) => {
    const r = results[i];
    if (!r?.ok) throw new Error(`${c.name}: the emulator itself fails (${JSON.stringify(r)})`);
    Object.assign(d, { label: r.label, ref: blob.add(c.reference[i] as Float64Array), bound: r.bound });
  });
  return { name: c.name, kind: 'primitive', ops: rec.ops };
}

/**
 * A plan's generation as the runner drove the emulator: the logits of every exact or refresh step
 * must be within the step's float32 budget of the emulator's (computed in float64, stored in
 * float32 between kernels). Lists and tokens of later steps are the recorded ones, so the GPU
 * replays the same generation.
 */
async function plan(name: string, base: ModelConfig, blob: Blob, ptx: Map<string, string>): Promise<Case> {
  const inner = new EmulatedDevice();
  const rec = new RecordingDevice(inner, blob, ptx);
  const logits: number[] = [];
  const wrap = (r: StepRunner): StepRunner => ({
    embed: (p: Program, c: CanvasRows, read: boolean) => r.embed(p, c, read),
    layer: (p: Program, l: number, lists: ReadonlyMap<string, Int32Array>, read: boolean) =>
      r.layer(p, l, lists, read),
    head: async (p: Program, out: Int32Array) => {
      // The head's first download is its logits; its statistics (kvp_softmax_stats) follow.
      logits.push(rec.downloads().length);
      return r.head(p, out);
    },
    cachePart: (part: CachePart, l: number) => r.cachePart(part, l),
  });
  const check = await checkPlan(name, base, rec, { wrap });
  if (check.worst > 1) throw new Error(`${name}: the emulator itself is over budget (${check.worst})`);
  const downloads = rec.downloads();
  check.result.steps.forEach((s, i) => {
    const d = downloads[logits[i] as number];
    if (!d) throw new Error(`${name}: step ${s.step} has no logits download`);
    d.label = `step ${s.step} (${s.phase}) logits`;
    d.ref = blob.add(Float64Array.from(rec.read.get(d) as Float32Array));
    if (check.exact || s.phase === 'refresh') d.bound = float32Budget(check.eagerError, s.scale);
  });
  return { name: `${name} on ${check.config}`, kind: 'plan', ops: rec.ops };
}

/** Writes the cases into dir (replacing it); returns a one-line summary. */
export async function writeCases(dir: string): Promise<string> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const blob = new Blob();
  const ptx = new Map<string, string>();
  const cases: Case[] = primitiveCases().map((c) => primitive(c, blob, ptx));
  const tiny = presets.tiny as ModelConfig;
  for (const [name, config] of [
    ['baseline', tiny],
    ['fast-dllm-v2', tiny],
    ['flashblock', { ...tiny, name: 'tiny-no-bias', qkvBias: false }],
  ] as const)
    cases.push(await plan(name, config, blob, ptx));
  // The benchmark kernels, at the shapes of LLaDA-8B (head_dim 128), for sm_90 (H100 / H200).
  const attention = generateKernel({ op: 'attention', headDim: 128, merge: false }, 'sm_90');
  const benchKernels = [
    ...GEMM_PATHS.map((path) => generateKernel({ op: 'gemm', path }, 'sm_90')),
    attention,
  ];
  for (const k of benchKernels) ptx.set(k.name, k.ptx);
  for (const [name, text] of ptx) writeFileSync(join(dir, `${name}.ptx`), text);
  const bytes = blob.bytes();
  writeFileSync(join(dir, 'cases.bin'), bytes);
  const manifest = {
    cases,
    kernels: Object.fromEntries(
      [...ptx].map(([name, text]) => [name, { file: `${name}.ptx`, params: declaredParams(text) }]),
    ),
    bench: {
      gemm: {
        kernels: Object.fromEntries(
          benchKernels
            .filter((k) => k.kind === 'gemm')
            .map((k) => [k.name, { shared: k.sharedBytes, block: k.block }]),
        ),
        tile: { m: GEMM_TILE.bm, n: GEMM_TILE.bn },
        shapes: [256, 1024, 4096].map((m) => ({ m, n: 4096, k: 4096 })),
      },
      attention: {
        kernel: attention.name,
        shared: attention.sharedBytes,
        block: attention.block,
        pairsPerCta: ATT_PAIRS,
        shapes: [1024, 4096].flatMap((n) =>
          [1, 0.25].map((keep) => ({ heads: 32, kvHeads: 32, headDim: 128, n, keep })),
        ),
      },
    },
  };
  writeFileSync(join(dir, 'cases.json'), `${JSON.stringify(manifest)}\n`);
  const launches = cases.reduce((a, c) => a + c.ops.filter((o) => o.op === 'launch').length, 0);
  return `${dir}: ${cases.length} cases, ${launches} launches, ${ptx.size} kernels, ${(bytes.byteLength / 2 ** 20).toFixed(1)} MiB of data`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href)
  console.log(await writeCases(process.argv[2] ?? '.gpu/cases'));
