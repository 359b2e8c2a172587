/**
 * An instruction-level interpreter of generated PTX, for the subset the GEMM kernels use, so that
 * their text — not only their documented semantics — is checked against float64 references where
 * no GPU is. The threads of a CTA run in lockstep, one instruction for all of them at a time, which
 * is exact for kernels whose branches are uniform (`bra.uni`, checked) and makes `bar.sync` and
 * `cp.async.wait_all` no-ops (`cp.async` copies at once). It cannot find a missing barrier or a race
 * between the warps of a CTA; it does find wrong addresses (every access is bounds-checked: global
 * memory against the device's allocations, shared memory against the launch's dynamic size), wrong
 * fragment layouts and conversions, wrong loop bounds, and reads of registers never written (they
 * start as NaN, or NaN halves for bit registers).
 *
 * `mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32` follows the fragment layouts of
 * the PTX ISA (section "Matrix Fragments for mma.m16n8k16"): with g = lane / 4 and t = lane % 4, A
 * register i holds row g + 8 (i & 1), columns 2t + 8 (i >> 1) and the next, low half first; B
 * register i holds rows (k) 2t + 8i and the next of column g; C/D register i row g + 8 (i >> 1),
 * column 2t + (i & 1). Products are exact and each mma's sum is rounded once to float32.
 */
import type { Dim3 } from '../../../src/backends/cuda-ptx/launch.ts';
import { halfBits } from './emulator.ts';

export class InterpretError extends Error {
  override readonly name = 'InterpretError';
}

/** Device memory as the interpreter sees it: a view of `bytes` bytes at a global address. */
export type GlobalMemory = (addr: number, bytes: number) => { readonly view: DataView; readonly off: number };

export interface PtxLaunch {
  readonly grid: Dim3;
  readonly block: Dim3;
  readonly sharedBytes: number;
  /** Parameter values by their PTX names (`p_c`, …); pointers as numbers. */
  readonly params: Readonly<Record<string, number>>;
  readonly global: GlobalMemory;
}

type RegClass = 'r' | 'rd' | 'f' | 'p' | 'h';

interface Ctx {
  regs: Float64Array;
  nregs: number;
  ctaid: [number, number, number];
  ntid: number;
  shared: DataView;
  launch: PtxLaunch;
}

type Get = (t: number) => number;
type Set = (t: number, v: number) => void;

interface Instr {
  readonly text: string;
  readonly guard?: { readonly reg: number; readonly neg: boolean };
  /** A per-thread effect (`run`), an effect over the whole CTA (`cta`: mma.sync, per warp), or control flow. */
  readonly run?: (t: number) => void;
  readonly cta?: () => void;
  readonly branch?: string;
  readonly ret?: boolean;
}

const f16Value = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (exp === 0 ? mant * 2 ** -24 : (1024 + mant) * 2 ** (exp - 25));
};

const word = new DataView(new ArrayBuffer(4));
const bf16Value = (h: number): number => {
  word.setUint32(0, h << 16);
  return word.getFloat32(0);
};

const halfValue = { f16: f16Value, bf16: bf16Value } as const;

/** Splits operands at commas outside braces and brackets. */
function operands(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '{' || ch === '[') depth++;
    if (ch === '}' || ch === ']') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

const vector = (op: string): string[] =>
  op.startsWith('{')
    ? op
        .slice(1, -1)
        .split(',')
        .map((s) => s.trim())
    : [op];

/** The kernel body compiled to closures over a context that each CTA resets. */
class Program {
  readonly instrs: Instr[] = [];
  readonly labels = new Map<string, number>();
  private readonly regIndex = new Map<string, number>();
  /** What a register holds before it is written: NaN bits (f16 and bf16 alike), NaN, a bad address. */
  private readonly poison: number[] = [];
  readonly ctx: Ctx;

  constructor(ptx: string, launch: PtxLaunch) {
    this.ctx = {
      regs: new Float64Array(0),
      nregs: 0,
      ctaid: [0, 0, 0],
      ntid: launch.block[0],
      shared: new DataView(new ArrayBuffer(Math.max(launch.sharedBytes, 1))),
      launch,
    };
    const body = ptx.slice(ptx.indexOf('{', ptx.indexOf('.visible .entry')) + 1, ptx.lastIndexOf('}'));
    for (const raw of body.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('//') || line.startsWith('.reg')) continue;
      const label = line.match(/^(\$?\w+):$/);
      if (label) {
        this.labels.set(label[1] as string, this.instrs.length);
        continue;
      }
      this.instrs.push(this.compile(line.replace(/;$/, '')));
    }
    this.ctx.nregs = this.regIndex.size;
  }

  private reg(name: string): { idx: number; cls: RegClass } {
    const m = name.match(/^%(rd|r|f|p|h)\d+$/);
    if (!m) throw new InterpretError(`not a register: ${name}`);
    let idx = this.regIndex.get(name);
    const cls = m[1] as RegClass;
    if (idx === undefined) {
      idx = this.regIndex.size;
      this.regIndex.set(name, idx);
      this.poison.push(cls === 'r' ? 0x7fff7fff : cls === 'h' ? 0x7fff : Number.NaN);
    }
    return { idx, cls };
  }

  private get(op: string): Get {
    const c = this.ctx;
    if (op === '%tid.x') return (t) => t;
    if (op === '%ctaid.x') return () => c.ctaid[0];
    if (op === '%ctaid.y') return () => c.ctaid[1];
    if (op === '%ctaid.z') return () => c.ctaid[2];
    if (op === 'kvp_smem') return () => 0;
    if (op.startsWith('%')) {
      const { idx } = this.reg(op);
      return (t) => c.regs[t * c.nregs + idx] as number;
    }
    if (/^0f[0-9A-F]{8}$/.test(op)) {
      word.setUint32(0, Number.parseInt(op.slice(2), 16));
      const v = word.getFloat32(0);
      return () => v;
    }
    if (/^-?\d+$/.test(op) || /^0x[0-9A-Fa-f]+$/.test(op)) {
      const v = Number(op);
      return () => v;
    }
    throw new InterpretError(`operand ${op}`);
  }

  private set(op: string): Set {
    const c = this.ctx;
    const { idx, cls } = this.reg(op);
    const norm: (v: number) => number =
      cls === 'f'
        ? Math.fround
        : cls === 'r'
          ? (v) => v >>> 0
          : cls === 'h'
            ? (v) => v & 0xffff
            : cls === 'p'
              ? (v) => (v ? 1 : 0)
              : (v) => v;
    return (t, v) => {
      c.regs[t * c.nregs + idx] = norm(v);
    };
  }

  /** `[reg]`, `[reg+imm]`: the address per thread. */
  private address(op: string): Get {
    const m = op.match(/^\[([^\]+]+)(?:\+(\d+))?\]$/);
    if (!m) throw new InterpretError(`address ${op}`);
    const base = this.get(m[1] as string);
    const off = Number(m[2] ?? 0);
    return (t) => base(t) + off;
  }

  /** Where an access of `bytes` bytes lands: shared memory (bounds-checked) or global memory. */
  private memory(space: string, bytes: number): (addr: number) => { view: DataView; off: number } {
    const c = this.ctx;
    if (space === 'shared')
      return (addr) => {
        if (addr < 0 || addr + bytes > c.launch.sharedBytes || addr % bytes !== 0)
          throw new InterpretError(
            `shared access of ${bytes} bytes at ${addr} (size ${c.launch.sharedBytes})`,
          );
        return { view: c.shared, off: addr };
      };
    return (addr) => {
      if (addr % bytes !== 0)
        throw new InterpretError(`misaligned global access of ${bytes} bytes at ${addr}`);
      return c.launch.global(addr, bytes);
    };
  }

  /** Reads or writes one element by the register's class: floats, or bits of the element's width. */
  private static read(view: DataView, off: number, cls: RegClass, width: number): number {
    if (cls === 'f') return view.getFloat32(off, true);
    return width === 2 ? view.getUint16(off, true) : view.getUint32(off, true);
  }
  private static write(view: DataView, off: number, cls: RegClass, width: number, v: number): void {
    if (cls === 'f') view.setFloat32(off, v, true);
    else if (width === 2) view.setUint16(off, v, true);
    else view.setUint32(off, v, true);
  }

  private loadStore(op: string, args: string[]): (t: number) => void {
    const parts = op.split('.');
    const store = parts[0] === 'st';
    const space = parts[1] as string;
    const type = parts[parts.length - 1] as string;
    const width = type === 'b16' ? 2 : 4;
    const regsOp = (store ? args[1] : args[0]) as string;
    const regs = vector(regsOp).map((r) => this.reg(r));
    const at = this.address((store ? args[0] : args[1]) as string);
    const mem = this.memory(space, width * regs.length);
    const gets = vector(regsOp).map((r) => this.get(r));
    const sets = store ? [] : vector(regsOp).map((r) => this.set(r));
    return (t) => {
      const { view, off } = mem(at(t));
      regs.forEach((r, i) => {
        if (store) Program.write(view, off + i * width, r.cls, width, (gets[i] as Get)(t));
        else (sets[i] as Set)(t, Program.read(view, off + i * width, r.cls, width));
      });
    };
  }

  private compile(line: string): Instr {
    let text = line;
    let guard: Instr['guard'];
    const g = text.match(/^@(!?)(%p\d+)\s+/);
    if (g) {
      guard = { reg: this.reg(g[2] as string).idx, neg: g[1] === '!' };
      text = text.slice(g[0].length);
    }
    const sp = text.indexOf(' ');
    const op = sp < 0 ? text : text.slice(0, sp);
    const args = sp < 0 ? [] : operands(text.slice(sp + 1));
    const base = { text: line, ...(guard ? { guard } : {}) };
    const run = (fn: (t: number) => void): Instr => ({ ...base, run: fn });
    const a = (i: number) => this.get(args[i] as string);
    const d = () => this.set(args[0] as string);
    const c = this.ctx;
    switch (op) {
      case 'ret':
        return { ...base, ret: true };
      case 'bra.uni':
        return { ...base, branch: args[0] as string };
      case 'bar.sync':
      case 'cp.async.commit_group':
      case 'cp.async.wait_all':
        return run(() => {});
      case 'ld.param.u32':
      case 'ld.param.u64':
      case 'ld.param.f32': {
        const name = (args[1] as string).slice(1, -1);
        const v = c.launch.params[name];
        if (v === undefined) throw new InterpretError(`no parameter ${name}`);
        const set = d();
        return run((t) => set(t, v));
      }
      case 'cvta.to.global.u64':
      case 'cvt.u64.u32':
      case 'mov.u32':
      case 'mov.f32': {
        const [set, x] = [d(), a(1)];
        return run((t) => set(t, x(t)));
      }
      case 'mov.b32': {
        const x = a(1);
        const [lo, hi] = vector(args[0] as string);
        if (hi === undefined) {
          const set = d();
          return run((t) => set(t, x(t)));
        }
        const [sl, sh] = [this.set(lo as string), this.set(hi)];
        return run((t) => {
          const v = x(t);
          sl(t, v & 0xffff);
          sh(t, v >>> 16);
        });
      }
      case 'add.s32':
      case 'add.s64':
      case 'add.f32': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, x(t) + y(t)));
      }
      case 'mul.lo.s32': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, Math.imul(x(t), y(t))));
      }
      case 'mad.lo.s32': {
        const [set, x, y, z] = [d(), a(1), a(2), a(3)];
        return run((t) => set(t, Math.imul(x(t), y(t)) + z(t)));
      }
      case 'mul.wide.u32': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, x(t) * y(t)));
      }
      case 'shl.b32': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, x(t) << y(t)));
      }
      case 'shl.b64': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, x(t) * 2 ** y(t)));
      }
      case 'rem.u32': {
        const [x, y, o] = [a(1), a(2), d()];
        return run((t) => o(t, x(t) % y(t)));
      }
      case 'shr.u32': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, x(t) >>> y(t)));
      }
      case 'or.b32':
      case 'or.pred': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, x(t) | y(t)));
      }
      case 'sub.f32': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, x(t) - y(t)));
      }
      case 'mul.f32': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, x(t) * y(t)));
      }
      case 'max.f32': {
        // PTX's max of a NaN and a number is the number.
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => {
          const [u, v] = [x(t), y(t)];
          set(t, Number.isNaN(u) ? v : Number.isNaN(v) ? u : Math.max(u, v));
        });
      }
      case 'rcp.rn.f32': {
        const [set, x] = [d(), a(1)];
        return run((t) => set(t, 1 / x(t)));
      }
      case 'ex2.approx.ftz.f32':
      case 'lg2.approx.ftz.f32': {
        // Modelled correctly rounded (the hardware is within 2 ulps); ftz: subnormal results are 0.
        const f = op.startsWith('ex2') ? (v: number) => 2 ** v : Math.log2;
        const [set, x] = [d(), a(1)];
        return run((t) => {
          const v = Math.fround(f(x(t)));
          set(t, Math.abs(v) < 2 ** -126 ? 0 * v : v);
        });
      }
      case 'testp.finite.f32': {
        const [set, x] = [d(), a(1)];
        return run((t) => set(t, Number.isFinite(x(t)) ? 1 : 0));
      }
      case 'shfl.sync.bfly.b32': {
        if (guard) throw new InterpretError('a guarded shfl.sync');
        if (args[3] !== '31' || args[4] !== '-1')
          throw new InterpretError(`shfl.sync of a partial warp: ${line}`);
        return { ...base, cta: this.butterfly(args[0] as string, args[1] as string, Number(args[2])) };
      }
      case 'and.b32':
      case 'and.pred': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, x(t) & y(t)));
      }
      case 'xor.b32': {
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, x(t) ^ y(t)));
      }
      case 'not.pred': {
        const [set, x] = [d(), a(1)];
        return run((t) => set(t, x(t) ? 0 : 1));
      }
      case 'selp.u32':
      case 'selp.f32':
      case 'selp.b64': {
        const [set, x, y, p] = [d(), a(1), a(2), a(3)];
        return run((t) => set(t, p(t) ? x(t) : y(t)));
      }
      case 'fma.rn.f32': {
        const [set, x, y, z] = [d(), a(1), a(2), a(3)];
        return run((t) => set(t, x(t) * y(t) + z(t)));
      }
      case 'cvt.rn.f32.u32': {
        const [set, x] = [d(), a(1)];
        return run((t) => set(t, x(t)));
      }
      case 'cvt.rn.f16.f32':
      case 'cvt.rn.bf16.f32': {
        const dt = op === 'cvt.rn.f16.f32' ? 'f16' : 'bf16';
        const [set, x] = [d(), a(1)];
        return run((t) => set(t, halfBits(dt, x(t))));
      }
      case 'cvt.rn.f16x2.f32':
      case 'cvt.rn.bf16x2.f32': {
        // The first source goes to the upper half.
        const dt = op === 'cvt.rn.f16x2.f32' ? 'f16' : 'bf16';
        const [set, x, y] = [d(), a(1), a(2)];
        return run((t) => set(t, halfBits(dt, x(t)) * 65536 + halfBits(dt, y(t))));
      }
      case 'cp.async.cg.shared.global': {
        const [dst, src, size] = [this.address(args[0] as string), this.address(args[1] as string), a(3)];
        if (args[2] !== '16') throw new InterpretError(`cp.async of ${args[2]} bytes`);
        const sh = this.memory('shared', 16);
        const gl = this.memory('global', 16);
        return run((t) => {
          const n = size(t);
          const to = sh(dst(t));
          const from = n > 0 ? gl(src(t)) : undefined;
          for (let i = 0; i < 16; i++)
            to.view.setUint8(to.off + i, from && i < n ? from.view.getUint8(from.off + i) : 0);
        });
      }
    }
    const setp = op.match(/^setp\.(lt|le|gt|ge|eq|ne)(\.and)?\.(u32|u64|f32)$/);
    if (setp) {
      const [set, x, y] = [d(), a(1), a(2)];
      const z = setp[2] ? a(3) : () => 1;
      const cmp = {
        lt: (u: number, v: number) => u < v,
        le: (u: number, v: number) => u <= v,
        gt: (u: number, v: number) => u > v,
        ge: (u: number, v: number) => u >= v,
        eq: (u: number, v: number) => u === v,
        // An unordered comparison is false in PTX (setp.ne with a NaN too: that is setp.neu).
        ne: (u: number, v: number) => u !== v && !Number.isNaN(u) && !Number.isNaN(v),
      }[setp[1] as 'lt'];
      // An immediate of a u32 comparison is its 32-bit pattern (-1 is 0xffffffff).
      const word = setp[3] === 'u32' ? (v: number) => v >>> 0 : (v: number) => v;
      return run((t) => set(t, cmp(word(x(t)), word(y(t))) && z(t) ? 1 : 0));
    }
    if (/^(ld|st)\.(global|shared)(\.nc)?(\.v[24])?\.(f32|b32|u32|b16)$/.test(op))
      return run(this.loadStore(op, args));
    const mma = op.match(/^mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.(b?f16)\.\1\.f32$/);
    if (mma) {
      if (guard) throw new InterpretError('a guarded mma.sync');
      return { ...base, cta: this.mma(halfValue[mma[1] as 'f16' | 'bf16'], args) };
    }
    throw new InterpretError(`unsupported instruction: ${line}`);
  }

  /** `shfl.sync.bfly.b32 d, a, lane, 31, -1` over whole warps: lane i reads lane i ^ `lane`'s a. */
  private butterfly(dst: string, src: string, lane: number): () => void {
    const [to, from] = [this.reg(dst), this.reg(src)];
    const c = this.ctx;
    return () => {
      const { regs, nregs } = c;
      if (c.ntid % 32 !== 0) throw new InterpretError('shfl.sync in a CTA of part of a warp');
      const read = Float64Array.from(
        { length: c.ntid },
        (_, t) => regs[(t ^ lane) * nregs + from.idx] as number,
      );
      for (let t = 0; t < c.ntid; t++) regs[t * nregs + to.idx] = read[t] as number;
    };
  }

  /** One m16n8k16 mma per warp, from the fragments of its 32 lanes. */
  private mma(value: (h: number) => number, args: string[]): () => void {
    const [dR, aR, bR, cR] = args.map((x) => vector(x).map((r) => this.reg(r).idx)) as [
      number[],
      number[],
      number[],
      number[],
    ];
    if (dR.length !== 4 || aR.length !== 4 || bR.length !== 2 || cR.length !== 4)
      throw new InterpretError('mma.sync m16n8k16 takes 4, 4, 2 and 4 registers');
    const c = this.ctx;
    const A = new Float64Array(16 * 16);
    const B = new Float64Array(16 * 8);
    const C = new Float64Array(16 * 8);
    return () => {
      const { regs, nregs } = c;
      for (let w = 0; w < c.ntid; w += 32) {
        for (let lane = 0; lane < 32; lane++) {
          const r0 = (w + lane) * nregs;
          const g = lane >> 2;
          const tg = lane & 3;
          aR.forEach((idx, i) => {
            const bits = regs[r0 + idx] as number;
            const at = (g + 8 * (i & 1)) * 16 + 2 * tg + 8 * (i >> 1);
            A[at] = value(bits & 0xffff);
            A[at + 1] = value(bits >>> 16);
          });
          bR.forEach((idx, i) => {
            const bits = regs[r0 + idx] as number;
            const k = 2 * tg + 8 * i;
            B[k * 8 + g] = value(bits & 0xffff);
            B[(k + 1) * 8 + g] = value(bits >>> 16);
          });
          cR.forEach((idx, i) => {
            C[(g + 8 * (i >> 1)) * 8 + 2 * tg + (i & 1)] = regs[r0 + idx] as number;
          });
        }
        for (let lane = 0; lane < 32; lane++) {
          const r0 = (w + lane) * nregs;
          const g = lane >> 2;
          const tg = lane & 3;
          dR.forEach((idx, i) => {
            const row = g + 8 * (i >> 1);
            const col = 2 * tg + (i & 1);
            let s = C[row * 8 + col] as number;
            for (let k = 0; k < 16; k++) s += (A[row * 16 + k] as number) * (B[k * 8 + col] as number);
            regs[r0 + idx] = Math.fround(s);
          });
        }
      }
    };
  }

  /** Runs every CTA of the grid. */
  run(): void {
    const c = this.ctx;
    const { grid, block } = c.launch;
    if (block[1] !== 1 || block[2] !== 1) throw new InterpretError('1-D blocks only');
    const threads = block[0];
    const sharedBytes = c.shared.byteLength;
    for (let z = 0; z < grid[2]; z++)
      for (let y = 0; y < grid[1]; y++)
        for (let x = 0; x < grid[0]; x++) {
          c.ctaid = [x, y, z];
          c.regs = new Float64Array(threads * c.nregs);
          for (let t = 0; t < threads; t++) c.regs.set(this.poison, t * c.nregs);
          c.shared = new DataView(new ArrayBuffer(sharedBytes));
          this.cta(threads);
        }
  }

  /**
   * Branches must be uniform over the threads still running, except a branch to the exit (a label
   * at the end or before `ret`): the threads that take it are done, the others go on.
   */
  private cta(threads: number): void {
    const c = this.ctx;
    const live = new Uint8Array(threads).fill(1);
    let running = threads;
    const on = (ins: Instr, t: number) =>
      live[t] === 1 && (!ins.guard || (c.regs[t * c.nregs + ins.guard.reg] === 1) !== ins.guard.neg);
    let pc = 0;
    while (pc < this.instrs.length) {
      const ins = this.instrs[pc] as Instr;
      if (ins.ret) return;
      if (ins.branch !== undefined) {
        let taken = 0;
        for (let t = 0; t < threads; t++) if (on(ins, t)) taken++;
        const to = this.labels.get(ins.branch);
        if (to === undefined) throw new InterpretError(`no label ${ins.branch}`);
        if (taken !== 0 && taken !== running) {
          if (to < this.instrs.length && !this.instrs[to]?.ret)
            throw new InterpretError(`divergent ${ins.text}: ${taken} of ${running} threads branch`);
          for (let t = 0; t < threads; t++)
            if (on(ins, t)) {
              live[t] = 0;
              running--;
            }
          pc++;
          continue;
        }
        pc = taken ? to : pc + 1;
        continue;
      }
      if (ins.cta) ins.cta();
      else if (ins.run) for (let t = 0; t < threads; t++) if (on(ins, t)) ins.run(t);
      pc++;
    }
  }
}

/** Runs a kernel's PTX text over a grid. */
export function interpretPtx(ptx: string, launch: PtxLaunch): void {
  new Program(ptx, launch).run();
}
