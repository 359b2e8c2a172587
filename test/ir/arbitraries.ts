/**
 * Random well-typed step programs, built through the ProgramBuilder from a tape of choices (so
 * that fast-check shrinks them by shortening the tape).
 */
import fc from 'fast-check';
import { ProgramBuilder, type StageBuilder } from '../../src/ir/builder.ts';
import {
  type Dim,
  type IRType,
  index,
  type Resource,
  type StepProgram,
  tensor,
  type Value,
} from '../../src/ir/types.ts';

export interface Tape {
  readonly ints: readonly number[];
  /** Continues the choices pseudo-randomly once `ints` runs out. */
  readonly seed: number;
  readonly floats: readonly number[];
  readonly words: readonly string[];
}

export const tapeArb: fc.Arbitrary<Tape> = fc.record({
  ints: fc.array(fc.noBias(fc.nat({ max: 1 << 20 })), { maxLength: 200 }),
  seed: fc.noBias(fc.nat()),
  floats: fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { maxLength: 20 }),
  words: fc.array(
    fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('h', 'in', 'out', 'true', 'a.b', 'L')),
    {
      maxLength: 20,
    },
  ),
});

const D = 8;
const H = 2;
const HD = 4;
const V = 16;

class Reader {
  private i = 0;
  private f = 0;
  private w = 0;
  private state: number;
  constructor(private readonly tape: Tape) {
    this.state = tape.seed >>> 0;
  }
  private next(): number {
    // xorshift32, for the choices past the end of the tape
    let x = this.state || 0x9e3779b9;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    const x = this.tape.ints[this.i++] ?? this.next();
    return n <= 1 ? 0 : x % n;
  }
  bool(): boolean {
    return this.int(2) === 1;
  }
  pick<T>(xs: readonly T[]): T | undefined {
    return xs.length === 0 ? undefined : xs[this.int(xs.length)];
  }
  float(): number {
    return this.tape.floats[this.f++] ?? 1e-5;
  }
  word(): string {
    return this.tape.words[this.w++] ?? 'x';
  }
}

const isT = (v: Value, pred: (shape: readonly Dim[], dtype: string) => boolean) =>
  v.type.kind === 'tensor' && pred(v.type.shape, v.type.dtype);
const shapeOf = (v: Value): readonly Dim[] => (v.type.kind === 'tensor' ? v.type.shape : []);

/** Builds one stage's body from the tape: a pool of values grows by safe, well-typed ops. */
class StageGen {
  private readonly pool: Value[] = [];
  private n = 0;
  constructor(
    private readonly r: Reader,
    private readonly sb: StageBuilder,
    private readonly resources: readonly Resource[],
  ) {}

  add(v: Value): Value {
    this.pool.push(v);
    return v;
  }

  private fresh(prefix: string): string {
    return `${prefix}${this.r.word()}.${this.n++}`;
  }

  weight(shape: Dim[]): Value {
    return this.sb.input(this.fresh('w.'), 'weight', tensor('f32', shape));
  }

  /** An index list of the given size: one already at hand, or a new input. */
  indexOf(size: Dim): Value {
    const have = this.pool.filter((v) => v.type.kind === 'index' && v.type.size === size);
    const got = this.r.bool() ? this.r.pick(have) : undefined;
    return got ?? this.add(this.sb.input(this.fresh('idx.'), 'index', index(size)));
  }

  newIndex(): Value {
    const size =
      this.r.pick<Dim>(['L', `#${this.r.pick(['rows', 'keys', 'a.b', 'c_1']) ?? 'rows'}`, 3]) ?? 'L';
    return this.indexOf(size);
  }

  /** A rank-2 f32 value with `width` columns (made by a linear when none is at hand). */
  rows2(width?: number): Value {
    const have = this.pool.filter((v) =>
      isT(v, (s, dt) => dt === 'f32' && s.length === 2 && (width === undefined || s[1] === width)),
    );
    const got = this.r.bool() || have.length === 0 ? undefined : this.r.pick(have);
    if (got) return got;
    const base = this.pool.filter((v) =>
      isT(v, (s, dt) => dt === 'f32' && s.length === 2 && typeof s[1] === 'number'),
    );
    const x = this.r.pick(base);
    if (!x) return this.add(this.weight(['L', width ?? D]));
    if (width === undefined || shapeOf(x)[1] === width) return x;
    return this.add(this.sb.op1('linear', [x, this.weight([width, shapeOf(x)[1] as number])]));
  }

  /** f32[N,heads,HD] from some rank-2 value. */
  heads(heads: number): Value {
    return this.add(this.sb.op1('reshape', [this.rows2(heads * HD)], { inner: [heads, HD] }));
  }

  step(): void {
    const sb = this.sb;
    const r = this.r;
    switch (r.int(16)) {
      case 0: {
        const x = r.pick(this.pool.filter((v) => v.type.kind === 'tensor')) ?? this.rows2();
        const rows = this.newIndex();
        this.add(sb.op1('gather', [x, rows]));
        break;
      }
      case 1: {
        const base = this.rows2();
        const rows = this.newIndex();
        const vals = sb.op1('gather', [base, rows]);
        this.add(sb.op1('scatter', [base, rows, sb.op1('add', [vals, vals])]));
        break;
      }
      case 2: {
        const x = this.rows2();
        this.add(sb.op1('rmsnorm', [x, this.weight([shapeOf(x)[1] as Dim])], { eps: r.float() }));
        break;
      }
      case 3: {
        const x = this.rows2();
        const out = r.pick([4, 8, 16]) ?? 8;
        const inW = shapeOf(x)[1] as Dim;
        const args = [x, this.weight([out, inW])];
        if (r.bool()) args.push(this.weight([out]));
        this.add(sb.op1('linear', args));
        break;
      }
      case 4: {
        const x = this.rows2();
        const y =
          r.pick(this.pool.filter((v) => v !== x && v.type.kind === 'tensor' && sameT(v.type, x.type))) ?? x;
        this.add(sb.op1(r.bool() ? 'add' : 'swiglu', [x, y]));
        break;
      }
      case 5:
        this.heads(r.pick([1, 2, 4]) ?? 2);
        break;
      case 6: {
        const x = this.heads(H);
        this.add(sb.op1('rope', [x, this.indexOf(shapeOf(x)[0] as Dim)], { theta: r.float() }));
        break;
      }
      case 7:
      case 8:
        this.attention(r.int(2) === 1);
        break;
      case 9: {
        const x = this.rows2();
        this.add(sb.op1(r.bool() ? 'softmax' : 'confidence', [x]));
        break;
      }
      case 10:
      case 11: {
        const res = r.pick(this.resources);
        if (!res) break;
        const all = this.add(sb.cacheRead(res));
        if (r.bool()) {
          const rows = this.newIndex();
          const vals = sb.op1('gather', [all, rows]);
          sb.cacheWrite(res, rows, vals);
        }
        break;
      }
      case 12: {
        // Write fresh values to a resource of heads.
        const res = r.pick(this.resources.filter((x) => x.shape.length === 3));
        if (!res) break;
        const x = this.heads(res.shape[1] as number);
        sb.cacheWrite(res, this.indexOf(shapeOf(x)[0] as Dim), x);
        break;
      }
      default: {
        const x = r.pick(this.pool) ?? this.rows2();
        sb.output(this.fresh('aux.'), x);
      }
    }
  }

  /** Attention of fresh queries over cached or fresh keys; with `split`, two partials merged. */
  attention(split: boolean): void {
    const sb = this.sb;
    const r = this.r;
    const kvh = r.pick([1, 2]) ?? 1;
    const q = this.heads(H);
    const qpos = this.indexOf(shapeOf(q)[0] as Dim);
    const blocks = r.bool() ? sb.input(this.fresh('blocks.'), 'blocks', tensor('i32', ['L'])) : undefined;
    const mask = blocks && r.bool() ? 'block_causal' : 'none';
    const part = () => {
      const cached = this.resources.find((x) => x.shape.length === 3 && x.shape[1] === kvh);
      let k: Value;
      if (cached && r.bool()) {
        const keys = this.newIndex();
        k = sb.op1('gather', [sb.cacheRead(cached), keys]);
      } else k = this.heads(kvh);
      const kpos = this.indexOf(shapeOf(k)[0] as Dim);
      const args = [q, k, r.bool() ? k : sb.op1('add', [k, k]), qpos, kpos];
      if (blocks) args.push(blocks);
      return sb.op('attention', args, { scale: r.float(), mask }) as [Value, Value];
    };
    let [o, lse] = part();
    if (split) {
      const [o2, lse2] = part();
      [o, lse] = sb.op('merge', [o, lse, o2, lse2]) as [Value, Value];
    }
    this.add(o);
    this.add(lse);
  }
}

const sameT = (a: IRType, b: IRType) => JSON.stringify(a) === JSON.stringify(b);

/** A random well-typed program: an embedding stage, some layer stages with carried values, a head. */
export function buildProgram(tape: Tape): StepProgram {
  const r = new Reader(tape);
  const pb = new ProgramBuilder(r.word() || 'p');
  const resources: Resource[] = [];
  const nres = r.int(4);
  for (let i = 0; i < nres; i++) {
    const kind = r.pick(['kv', 'partial', 'hidden'] as const) ?? 'kv';
    const shape: Dim[] = kind === 'hidden' ? ['L', D] : ['L', r.pick([1, 2]) ?? 1, HD];
    resources.push(pb.resource({ name: `${kind}.${r.word()}.${i}`, kind, dtype: 'f32', shape }));
  }
  const outputs: { name: string; type: IRType }[] = [];
  const embed = pb.stage('embed');
  const tokens = embed.input('tokens', 'tokens', tensor('i32', ['L']));
  embed.output('h', embed.op1('embed', [embed.input('table', 'weight', tensor('f32', [V, D])), tokens]));
  outputs.push({ name: 'h', type: tensor('f32', ['L', D]) });
  const nstages = r.int(4);
  for (let s = 0; s < nstages; s++) {
    const sb = pb.stage(`layer.${s}.${r.word()}`);
    const gen = new StageGen(r, sb, resources);
    const h = gen.add(sb.input('h', 'carried', tensor('f32', ['L', D])));
    // Some more carried values, from the outputs of earlier stages.
    const taken = new Set(['h']);
    for (let k = r.int(3); k > 0; k--) {
      const o = r.pick(outputs);
      if (!o || taken.has(o.name)) continue;
      taken.add(o.name);
      gen.add(sb.input(o.name, 'carried', outputs.filter((x) => x.name === o.name).at(-1)?.type ?? o.type));
    }
    const steps = r.int(12);
    for (let k = 0; k < steps; k++) gen.step();
    const rows = gen.indexOf(`#rows.${s}`);
    const x = sb.op1('rmsnorm', [sb.op1('gather', [h, rows]), gen.weight([D])], { eps: 1e-6 });
    sb.output('h', sb.op1('scatter', [h, rows, x]));
    const stage = sb.finish();
    for (const o of stage.outputs) outputs.push({ name: o.name, type: o.value.type });
  }
  const head = pb.stage('head');
  const h = head.input('h', 'carried', tensor('f32', ['L', D]));
  const out = head.input('out', 'index', index('#out'));
  const logits = head.op1('logits', [
    head.op1('gather', [h, out]),
    head.input('lm_head.weight', 'weight', tensor('f32', [V, D])),
  ]);
  head.output('logits', logits);
  head.output('confidence', head.op1('confidence', [logits]));
  return pb.finish();
}

export const wellTypedProgram: fc.Arbitrary<StepProgram> = tapeArb.map(buildProgram);
