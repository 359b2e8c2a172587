/**
 * A small PTX text builder shared by the kernel generators: numbered virtual registers of each
 * class, declared at the end with exact counts, float literals in PTX hex form, and the module
 * header. Generators write instructions as text; ptxas is the judge of their syntax.
 */
export type Arch = 'sm_80' | 'sm_90';
export const ARCHES: readonly Arch[] = ['sm_80', 'sm_90'];
export const PTX_VERSION = '8.0';

export type ParamType = 'u64' | 'u32' | 'f32';

export interface KernelParam {
  readonly name: string;
  readonly type: ParamType;
  /** Pointers that may be 0 (an optional operand, e.g. no index list, no bias). */
  readonly nullable?: boolean;
}

/** What every generator returns: one module with one entry, and how to launch it. */
export interface GeneratedKernel {
  /** Entry name, also the file name (`<name>.ptx`); encodes every generator option. */
  readonly name: string;
  readonly kind:
    | 'gemm'
    | 'attention'
    | 'norm'
    | 'rope'
    | 'elementwise'
    | 'copy'
    | 'merge'
    | 'embed'
    | 'stats';
  readonly ptx: string;
  readonly params: readonly KernelParam[];
  /** Threads per CTA (1-D blocks throughout). */
  readonly block: number;
  /** Dynamic shared memory to pass to cuLaunchKernel, bytes. */
  readonly sharedBytes: number;
}

export class KernelGenError extends Error {
  override readonly name = 'KernelGenError';
}

const f32buf = new DataView(new ArrayBuffer(8));
/** A PTX single-precision literal, `0fXXXXXXXX` (exact: the value rounded to float32). */
export function f32(x: number): string {
  f32buf.setFloat32(0, x);
  return `0f${f32buf.getUint32(0).toString(16).toUpperCase().padStart(8, '0')}`;
}
/** A PTX double-precision literal, `0dXXXXXXXXXXXXXXXX`. */
export function f64(x: number): string {
  f32buf.setFloat64(0, x);
  const hi = f32buf.getUint32(0).toString(16).padStart(8, '0');
  const lo = f32buf.getUint32(4).toString(16).padStart(8, '0');
  return `0d${(hi + lo).toUpperCase()}`;
}
export const NEG_INF = '0fFF800000';
export const LOG2E = f32(Math.LOG2E);
export const LN2 = f32(Math.LN2);

/** ptxas rejects non-ASCII text anywhere, comments included. */
const ascii = (s: string): string => s.replace(/·/g, '*').replace(/[^\x20-\x7e\n]/g, '?');

type RegClass = 'r' | 'rd' | 'f' | 'fd' | 'p' | 'h';
const regType: Record<RegClass, string> = { r: 'b32', rd: 'b64', f: 'f32', fd: 'f64', p: 'pred', h: 'b16' };

export class Ptx {
  private readonly lines: string[] = [];
  private readonly counts: Record<RegClass, number> = { r: 0, rd: 0, f: 0, fd: 0, p: 0, h: 0 };
  private labels = 0;

  /** A fresh 32-bit integer register. */
  r(): string {
    return `%r${this.counts.r++}`;
  }
  rd(): string {
    return `%rd${this.counts.rd++}`;
  }
  f(): string {
    return `%f${this.counts.f++}`;
  }
  fd(): string {
    return `%fd${this.counts.fd++}`;
  }
  p(): string {
    return `%p${this.counts.p++}`;
  }
  h(): string {
    return `%h${this.counts.h++}`;
  }
  fs(n: number): string[] {
    return Array.from({ length: n }, () => this.f());
  }
  rs(n: number): string[] {
    return Array.from({ length: n }, () => this.r());
  }
  label(stem: string): string {
    return `$L_${stem}_${this.labels++}`;
  }

  /** One instruction (the `;` is added). */
  i(text: string): void {
    this.lines.push(`\t${text};`);
  }
  /** An instruction guarded by a predicate (`@p` / `@!p`). */
  at(pred: string, text: string): void {
    this.lines.push(`\t@${pred} ${text};`);
  }
  place(label: string): void {
    this.lines.push(`${label}:`);
  }
  comment(text: string): void {
    this.lines.push(`\t// ${ascii(text)}`);
  }

  /** Loads a kernel parameter into a register of its type. */
  param(name: string, type: ParamType): string {
    const reg = type === 'u64' ? this.rd() : type === 'f32' ? this.f() : this.r();
    this.i(`ld.param.${type} ${reg}, [${name}]`);
    return reg;
  }
  /** Loads a pointer parameter and converts it to a global address. */
  gptr(name: string): string {
    const raw = this.param(name, 'u64');
    const g = this.rd();
    this.i(`cvta.to.global.u64 ${g}, ${raw}`);
    return g;
  }
  /** A predicate that is true when the (raw) pointer parameter is null. */
  isNull(name: string): { raw: string; pred: string } {
    const raw = this.param(name, 'u64');
    const pred = this.p();
    this.i(`setp.eq.u64 ${pred}, ${raw}, 0`);
    return { raw, pred };
  }
  special(name: string): string {
    const reg = this.r();
    this.i(`mov.u32 ${reg}, ${name}`);
    return reg;
  }
  /** base + index * scale (bytes), index a 32-bit unsigned register. */
  addr(base: string, index: string, scale: number): string {
    const off = this.rd();
    const out = this.rd();
    this.i(`mul.wide.u32 ${off}, ${index}, ${scale}`);
    this.i(`add.s64 ${out}, ${base}, ${off}`);
    return out;
  }

  /**
   * The whole module: header, optional module-scope declarations, the entry with its parameters,
   * register declarations and body.
   */
  module(opts: {
    arch: Arch;
    entry: string;
    params: readonly KernelParam[];
    maxThreads: number;
    globals?: readonly string[];
    dynamicShared?: boolean;
    doc?: string;
  }): string {
    const decls = (Object.keys(this.counts) as RegClass[])
      .filter((c) => this.counts[c] > 0)
      .map((c) => `\t.reg .${regType[c]} %${c}<${this.counts[c]}>;`);
    return [
      `// Generated by kvplan (src/backends/cuda-ptx); do not edit.`,
      ...(opts.doc
        ? ascii(opts.doc)
            .split('\n')
            .map((l) => `// ${l}`)
        : []),
      `.version ${PTX_VERSION}`,
      `.target ${opts.arch}`,
      '.address_size 64',
      '',
      ...(opts.dynamicShared ? ['.extern .shared .align 16 .b8 kvp_smem[];'] : []),
      ...(opts.globals ?? []),
      '',
      `.visible .entry ${opts.entry}(`,
      opts.params.map((p) => `\t.param .${p.type} ${p.name}`).join(',\n'),
      ')',
      `.maxntid ${opts.maxThreads}, 1, 1`,
      '{',
      ...decls,
      '',
      ...this.lines,
      '\tret;',
      '}',
      '',
    ].join('\n');
  }
}
