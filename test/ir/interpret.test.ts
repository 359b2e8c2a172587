import { describe, expect, test } from 'vitest';
import { attentionPartial, mergePartials } from '../../src/ir/attention.ts';
import { InterpretError, interpretStage, ResourceStore, rope } from '../../src/ir/interpret.ts';
import { fromNested, type HostInts, type HostTensor, ints, type RuntimeValue } from '../../src/ir/tensor.ts';
import {
  type AttrValue,
  type Dim,
  type Input,
  type InputRole,
  type Instr,
  type IRType,
  index,
  type Resource,
  type Stage,
  tensor,
  type Value,
} from '../../src/ir/types.ts';

// ---- building stages by hand (no dependency on the IR builder) ----

let nextId = 0;
const val = (type: IRType): Value => ({ id: nextId++, type });
const f32 = (...shape: Dim[]) => tensor('f32', shape);
const i32 = (...shape: Dim[]) => tensor('i32', shape);

const roleOf = (t: IRType): InputRole =>
  t.kind === 'index' ? 'index' : t.dtype === 'i32' ? 'tokens' : 'weight';

interface Operand {
  readonly type: IRType;
  readonly value: RuntimeValue;
}

/** Runs one op on the given operands in a one-instruction stage; returns its results in order. */
function runOp(
  op: string,
  operands: readonly Operand[],
  attrs: Record<string, AttrValue>,
  resultTypes: readonly IRType[],
  store: ResourceStore = new ResourceStore([], { L: 8 }),
): RuntimeValue[] {
  const inputs: Input[] = operands.map((o, i) => ({
    name: `a${i}`,
    role: roleOf(o.type),
    value: val(o.type),
  }));
  const results = resultTypes.map(val);
  const stage: Stage = {
    name: `test_${op}`,
    inputs,
    body: [{ op, args: inputs.map((i) => i.value), results, attrs }],
    outputs: results.map((r, i) => ({ name: `r${i}`, value: r })),
  };
  const out = interpretStage(stage, new Map(operands.map((o, i) => [`a${i}`, o.value])), store);
  return results.map((_, i) => out.get(`r${i}`) as RuntimeValue);
}

const T = (x: Parameters<typeof fromNested>[0], type?: IRType): Operand => {
  const t = fromNested(x);
  return { type: type ?? f32(...t.shape), value: t };
};
const I = (xs: readonly number[], size: Dim = xs.length): Operand => ({
  type: index(size),
  value: Int32Array.from(xs),
});
const Ints = (xs: readonly number[]): Operand => ({ type: i32(xs.length), value: ints([xs.length], xs) });

const data = (v: RuntimeValue | undefined): number[] => {
  if (v === undefined) throw new Error('missing result');
  return v instanceof Int32Array ? [...v] : [...v.data];
};

function expectNear(actual: ArrayLike<number>, expected: readonly number[], tol = 1e-12): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as number;
    const b = expected[i] as number;
    if (!(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)))) expect.fail(`entry ${i}: ${a}, expected ${b}`);
  }
}

/** Deterministic pseudo-random values in [-1, 1). */
function rand(n: number, seed: number): Float64Array {
  let s = seed >>> 0 || 1;
  return Float64Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

// ---- ops, by hand ----

describe('elementwise and row ops', () => {
  test('rmsnorm', () => {
    const [a] = runOp('rmsnorm', [T([[3, 4]]), T([1, 2])], { eps: 0 }, [f32(1, 2)]);
    const rms = Math.sqrt(12.5);
    expectNear(data(a), [3 / rms, 8 / rms]);
    const [b] = runOp('rmsnorm', [T([[1, 1]]), T([1, 1])], { eps: 3 }, [f32(1, 2)]);
    expectNear(data(b), [0.5, 0.5]);
  });

  test('linear with and without bias; logits', () => {
    const x = T([
      [1, 2],
      [-1, 0.5],
    ]);
    const w = T([
      [1, 0],
      [0, 1],
      [1, 1],
    ]);
    const [a] = runOp('linear', [x, w], {}, [f32(2, 3)]);
    expect(data(a)).toEqual([1, 2, 3, -1, 0.5, -0.5]);
    const [b] = runOp('linear', [x, w, T([10, 20, 30])], {}, [f32(2, 3)]);
    expect(data(b)).toEqual([11, 22, 33, 9, 20.5, 29.5]);
    const [c] = runOp(
      'logits',
      [
        T([[1, 2]]),
        T([
          [1, 1],
          [2, -1],
          [0, 3],
        ]),
      ],
      {},
      [f32(1, 3)],
    );
    expect(data(c)).toEqual([3, 0, 6]);
  });

  test('add and swiglu', () => {
    const [a] = runOp('add', [T([[1, 2]]), T([[10, -2]])], {}, [f32(1, 2)]);
    expect(data(a)).toEqual([11, 0]);
    const [s] = runOp('swiglu', [T([[1, 0, -2]]), T([[2, 5, 3]])], {}, [f32(1, 3)]);
    expectNear(data(s), [2 / (1 + Math.exp(-1)), 0, (3 * -2) / (1 + Math.exp(2))]);
  });

  test('reshape keeps rows and their data', () => {
    const x = T([
      [0, 1, 2, 3, 4, 5],
      [6, 7, 8, 9, 10, 11],
    ]);
    const [r] = runOp('reshape', [x], { inner: [2, 3] }, [f32(2, 2, 3)]);
    expect((r as HostTensor).shape).toEqual([2, 2, 3]);
    expect(data(r)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(() => runOp('reshape', [x], { inner: [4] }, [f32(2, 4)])).toThrow(/cannot reshape/);
  });

  test('embed picks table rows by token id', () => {
    const table = T([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    const [e] = runOp('embed', [table, Ints([2, 0, 2])], {}, [f32(3, 2)]);
    expect(data(e)).toEqual([5, 6, 1, 2, 5, 6]);
    expect(() => runOp('embed', [table, Ints([3])], {}, [f32(1, 2)])).toThrow(/token id entry 0 is 3/);
  });
});

describe('rope', () => {
  test('hand case: hd 4, theta 10000 (pair frequencies 1 and 0.01)', () => {
    const x = T([[[1, 0, 0, 0]], [[0, 1, 0, 0]]]);
    const [r] = runOp('rope', [x, I([2, 3])], { theta: 10000 }, [f32(2, 1, 4)]);
    // row 0: pair 0 at angle 2; row 1: pair 1 at angle 3 * 0.01.
    expectNear(data(r), [Math.cos(2), 0, Math.sin(2), 0, 0, Math.cos(0.03), 0, Math.sin(0.03)]);
    const [s] = runOp('rope', [T([[[0, 0, 1, 0]]]), I([2])], { theta: 10000 }, [f32(1, 1, 4)]);
    // x_{i+hd/2}' = x_{i+hd/2} cos a + x_i sin a and x_i' = x_i cos a - x_{i+hd/2} sin a
    expectNear(data(s), [-Math.sin(2), 0, Math.cos(2), 0]);
  });

  test('rotating by p then -p restores x, and preserves the norm of each head', () => {
    const heads = 3;
    const hd = 6;
    const pos = Int32Array.of(0, 1, 7, 31);
    const x = rand(pos.length * heads * hd, 7);
    const y = rope(x, pos, heads, hd, 500);
    const back = rope(
      y,
      pos.map((p) => -p),
      heads,
      hd,
      500,
    );
    expectNear(back, [...x], 1e-13);
    for (let r = 0; r < pos.length * heads; r++) {
      const norm = (a: Float64Array) => Math.hypot(...a.subarray(r * hd, (r + 1) * hd));
      expectNear([norm(y)], [norm(x)], 1e-13);
    }
    // Same through the interpreter.
    const [viaOp] = runOp(
      'rope',
      [{ type: f32(4, heads, hd), value: { shape: [4, heads, hd], data: x } }, I([...pos], '#r')],
      { theta: 500 },
      [f32(4, heads, hd)],
      new ResourceStore([], { L: 32 }),
    );
    expectNear(data(viaOp), [...y], 0);
    // Position 0 is the identity.
    expectNear(rope(x, new Int32Array(4), heads, hd, 500), [...x], 0);
  });
});

describe('distribution ops', () => {
  const logits = [
    [0, Math.log(3)],
    [1000, 1000 + Math.log(3)],
    [Math.log(1), Math.log(2)],
  ];

  test('softmax is stable and sums to 1', () => {
    const [p] = runOp('softmax', [T(logits)], {}, [f32(3, 2)]);
    expectNear(data(p), [0.25, 0.75, 0.25, 0.75, 1 / 3, 2 / 3]);
  });

  test('confidence, margin and entropy', () => {
    const [c] = runOp('confidence', [T(logits)], {}, [f32(3)]);
    expectNear(data(c), [0.75, 0.75, 2 / 3]);
    const [m] = runOp('margin', [T(logits)], {}, [f32(3)]);
    expectNear(data(m), [0.5, 0.5, 1 / 3]);
    const [e] = runOp('entropy', [T(logits)], {}, [f32(3)]);
    const h = (ps: number[]) => -ps.reduce((a, p) => a + p * Math.log(p), 0);
    expectNear(data(e), [h([0.25, 0.75]), h([0.25, 0.75]), h([1 / 3, 2 / 3])]);
  });

  test('margin over three classes and with a tie; entropy of a uniform row', () => {
    const x = T([
      [Math.log(1), Math.log(5), Math.log(2)],
      [0, 0, -1e9],
    ]);
    const [m] = runOp('margin', [x], {}, [f32(2)]);
    expectNear(data(m), [3 / 8, 0]);
    const [e] = runOp('entropy', [T([[7, 7, 7, 7]])], {}, [f32(1)]);
    expectNear(data(e), [Math.log(4)]);
  });

  test('cosine: rows flattened; 1 when both rows are zero, 0 when one is', () => {
    const a = T([[[1, 0]], [[0, 0]], [[1, 1]], [[0, 0]], [[1, 2]]]);
    const b = T([[[0, 1]], [[0, 0]], [[2, 2]], [[1, 0]], [[-1, -2]]]);
    const [c] = runOp('cosine', [a, b], {}, [f32(5)]);
    expectNear(data(c), [0, 1, 1, 0, -1]);
  });
});

describe('gather and scatter', () => {
  const x = T([
    [1, 2],
    [3, 4],
    [5, 6],
  ]);

  test('gather tensor rows, i32 rows and index-list entries', () => {
    const [g] = runOp('gather', [x, I([2, 0, 2], '#r')], {}, [f32('#r', 2)]);
    expect(data(g)).toEqual([5, 6, 1, 2, 5, 6]);
    const [gi] = runOp('gather', [Ints([7, 8, 9]), I([1, 2], '#r')], {}, [i32('#r')]);
    expect((gi as HostInts).data).toBeInstanceOf(Int32Array);
    expect(data(gi)).toEqual([8, 9]);
    const [gl] = runOp('gather', [I([4, 5, 6, 7], '#c'), I([3, 0], '#r')], {}, [index('#r')]);
    expect(gl).toBeInstanceOf(Int32Array);
    expect(data(gl)).toEqual([7, 4]);
    expect(() => runOp('gather', [x, I([3])], {}, [f32(1, 2)])).toThrow(/row entry 0 is 3, outside \[0, 3\)/);
  });

  test('scatter is functional: a copy with the rows replaced, base unchanged', () => {
    const base = x.value as HostTensor;
    const before = [...base.data];
    const [s] = runOp(
      'scatter',
      [
        x,
        I([2, 0]),
        T([
          [10, 20],
          [30, 40],
        ]),
      ],
      {},
      [f32(3, 2)],
    );
    expect(data(s)).toEqual([30, 40, 3, 4, 10, 20]);
    expect([...base.data]).toEqual(before);
    const [si] = runOp('scatter', [Ints([1, 2, 3]), I([1]), Ints([9])], {}, [i32(3)]);
    expect(data(si)).toEqual([1, 9, 3]);
  });
});

describe('selection: topk, topp, keep', () => {
  const L = 8;
  const store = () => new ResourceStore([], { L });
  const scores = (s: number[]) => T(s, f32('L'));
  const sel = (op: string, s: number[], cands: number[], attrs: Record<string, AttrValue>) =>
    data(runOp(op, [scores(s), I(cands, '#c')], { ...attrs, out: '#sel' }, [index('#sel')], store())[0]);

  test('topk: ties go to the lower position; the result is in position order', () => {
    const s = [5, 1, 3, 3, 3, 0, 9, 9];
    expect(sel('topk', s, [4, 3, 2, 1], { k: 2 })).toEqual([2, 3]);
    expect(sel('topk', s, [4, 3, 2, 1], { k: 1 })).toEqual([2]);
    expect(sel('topk', s, [7, 6, 0], { k: 1 })).toEqual([6]);
    expect(sel('topk', s, [5, 1, 0], { k: 10 })).toEqual([0, 1, 5]);
    expect(sel('topk', s, [5, 1, 0], { k: 0 })).toEqual([]);
    expect(sel('topk', s, [], { k: 3 })).toEqual([]);
  });

  test('topp: the fewest best candidates reaching fraction p of the total', () => {
    const s = [0.5, 0.2, 0.2, 0.1, 0, 0, 0, 0];
    const all = [0, 1, 2, 3, 4, 5, 6, 7];
    expect(sel('topp', s, all, { p: 0.5 })).toEqual([0]);
    expect(sel('topp', s, all, { p: 0.6 })).toEqual([0, 1]); // tie 1 vs 2: lower position
    expect(sel('topp', s, all, { p: 0.75 })).toEqual([0, 1, 2]);
    expect(sel('topp', s, all, { p: 1 })).toEqual([0, 1, 2, 3]);
    // total over the candidates only: {1, 2, 3} totals 0.5, so 0.5 of it is one 0.2 plus a tie.
    expect(sel('topp', s, [3, 2, 1], { p: 0.5 })).toEqual([1, 2]);
    expect(() => sel('topp', [-1, 0, 0, 0, 0, 0, 0, 0], [0], { p: 0.5 })).toThrow(/non-negative/);
  });

  test('keep: ceil(ratio * N) best candidates', () => {
    const s = [0, 1, 2, 3, 4, 5, 6, 7];
    expect(sel('keep', s, [0, 1, 2], { ratio: 0.5 })).toEqual([1, 2]); // ceil(1.5) = 2
    expect(sel('keep', [1, 1, 1, 1, 1, 1, 1, 1], [7, 5, 3, 1], { ratio: 0.5 })).toEqual([1, 3]);
    expect(sel('keep', s, [0, 1, 2, 3, 4, 5, 6, 7], { ratio: 0.375 })).toEqual([5, 6, 7]);
    // 0.3 * 10 is 3.0000000000000004 in floating point; keep 3, not 4.
    const ten = new ResourceStore([], { L: 10 });
    const r = runOp(
      'keep',
      [T([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], f32('L')), I([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])],
      { ratio: 0.3, out: '#k' },
      [index('#k')],
      ten,
    );
    expect(data(r[0])).toEqual([0, 1, 2]);
  });

  test('a NaN score (an unwritten cache row) is an error, not a silent choice', () => {
    expect(() => sel('topk', [0, Number.NaN, 0, 0, 0, 0, 0, 0], [0, 1], { k: 1 })).toThrow(/NaN/);
  });
});

describe('attention ops in the interpreter', () => {
  test('attention and merge agree with the kernels; GQA heads from the operand shapes', () => {
    const blocks = ints([6], [-1, -1, 0, 0, 1, 1]);
    const q = { shape: [3, 4, 2], data: rand(24, 1) };
    const k = { shape: [5, 2, 2], data: rand(20, 2) };
    const v = { shape: [5, 2, 2], data: rand(20, 3) };
    const qpos = [1, 3, 5];
    const kpos = [0, 2, 3, 4, 5];
    const store = new ResourceStore([], { L: 6 });
    const [o, lse] = runOp(
      'attention',
      [
        { type: f32('#q', 4, 2), value: q },
        { type: f32('#k', 2, 2), value: k },
        { type: f32('#k', 2, 2), value: v },
        I(qpos, '#q'),
        I(kpos, '#k'),
        { type: i32('L'), value: blocks },
      ],
      { scale: 0.7, mask: 'block_causal' },
      [f32('#q', 4, 2), f32('#q', 4)],
      store,
    );
    const want = attentionPartial(q.data, k.data, v.data, Int32Array.from(qpos), Int32Array.from(kpos), {
      scale: 0.7,
      mask: 'block_causal',
      blocks: blocks.data,
      heads: 4,
      kvHeads: 2,
      headDim: 2,
    });
    expect(data(o)).toEqual([...want.o]);
    expect(data(lse)).toEqual([...want.lse]);
    const [mo, ml] = runOp(
      'merge',
      [
        { type: f32(3, 4, 2), value: o as HostTensor },
        { type: f32(3, 4), value: lse as HostTensor },
        { type: f32(3, 4, 2), value: { shape: [3, 4, 2], data: rand(24, 9) } },
        { type: f32(3, 4), value: { shape: [3, 4], data: rand(12, 10) } },
      ],
      {},
      [f32(3, 4, 2), f32(3, 4)],
    );
    const m = mergePartials(want.o, want.lse, rand(24, 9), rand(12, 10), 2);
    expect(data(mo)).toEqual([...m.o]);
    expect(data(ml)).toEqual([...m.lse]);
  });

  test('attention_mass: probabilities each key receives, summed over queries and heads', () => {
    // Zero queries: uniform attention over the visible keys.
    const q = { shape: [2, 2, 1], data: new Float64Array(4) };
    const k = { shape: [4, 1, 1], data: Float64Array.of(1, 2, 3, 4) };
    const mass = (mask: string, blocks: number[], kpos = [0, 1, 2, 3]) => {
      const nk = kpos.length;
      const operands: Operand[] = [
        { type: f32(2, 2, 1), value: q },
        { type: f32(nk, 1, 1), value: { shape: [nk, 1, 1], data: k.data.slice(0, nk) } },
        I([0, 2]),
        I(kpos),
        { type: i32('L'), value: ints([4], blocks) },
      ];
      return data(
        runOp('attention_mass', operands, { scale: 1, mask }, [f32(nk)], new ResourceStore([], { L: 4 }))[0],
      );
    };
    expectNear(mass('none', [-1, 0, 0, 1]), [1, 1, 1, 1]);
    // query 0 (prompt) sees key 0 only; query 1 (block 0) sees keys 0..2: 2 heads each.
    expectNear(mass('block_causal', [-1, 0, 0, 1]), [2 + 2 / 3, 2 / 3, 2 / 3, 0]);
    // query 0 (block 0) sees keys 0 and 2; query 1 (prompt) sees key 2 only.
    expectNear(mass('block_causal', [0, 1, -1, 1]), [1, 0, 3, 0]);
    // Queries that see no key contribute nothing: both are in the prompt, the keys in blocks.
    expectNear(mass('block_causal', [-1, 0, -1, 1], [1, 3]), [0, 0]);
    // Non-uniform: one query, two keys with scores 1 and 2, two heads.
    const [m] = runOp(
      'attention_mass',
      [T([[[1], [1]]]), T([[[1]], [[2]]]), I([0]), I([0, 1])],
      { scale: 1, mask: 'none' },
      [f32(2)],
    );
    const e = Math.E;
    expectNear(data(m), [2 / (1 + e), (2 * e) / (1 + e)]);
  });

  test('query_key: mean over query rows of q·k, averaged over heads with the GQA mapping', () => {
    // H = 2, KVH = 2, hd = 1: head 0 reads kv head 0, head 1 reads kv head 1.
    const q = T([
      [[1], [3]],
      [[3], [5]],
    ]);
    const k = T([
      [[1], [0]],
      [[0], [1]],
      [[2], [-1]],
    ]);
    const [s] = runOp('query_key', [q, k], {}, [f32(3)]);
    // mean q of head 0 is 2, of head 1 is 4; average over the 2 heads.
    expectNear(data(s), [(2 * 1 + 4 * 0) / 2, (2 * 0 + 4 * 1) / 2, (2 * 2 + 4 * -1) / 2]);
    // H = 2, KVH = 1: both heads read kv head 0, no scale.
    const [t] = runOp('query_key', [T([[[1], [3]]]), T([[[2]], [[-1]]])], {}, [f32(2)]);
    expectNear(data(t), [4, -2]);
  });
});

// ---- a whole stage, and the checks ----

interface Chain {
  stage: Stage;
  resources: Resource[];
  dims: { D: number; H: number; KVH: number; hd: number; L: number };
}

/** gather → rmsnorm → linear → reshape → rope → attention → cache_write → cache_read */
function chainStage(): Chain {
  const d = { D: 8, H: 4, KVH: 2, hd: 2, L: 6 };
  const resources: Resource[] = [
    { name: 'k0', kind: 'kv', dtype: 'f32', shape: ['L', d.KVH, d.hd] },
    { name: 'v0', kind: 'kv', dtype: 'f32', shape: ['L', d.KVH, d.hd] },
  ];
  const inp = (name: string, role: InputRole, type: IRType): Input => ({ name, role, value: val(type) });
  const h = inp('h', 'carried', f32('L', d.D));
  const rows = inp('rows', 'index', index('#r'));
  const blocks = inp('blocks', 'blocks', i32('L'));
  const wn = inp('norm', 'weight', f32(d.D));
  const wq = inp('wq', 'weight', f32(d.H * d.hd, d.D));
  const bq = inp('bq', 'weight', f32(d.H * d.hd));
  const wk = inp('wk', 'weight', f32(d.KVH * d.hd, d.D));
  const wv = inp('wv', 'weight', f32(d.KVH * d.hd, d.D));
  const body: Instr[] = [];
  const emit = (op: string, args: Value[], attrs: Record<string, AttrValue>, types: IRType[]): Value[] => {
    const results = types.map(val);
    body.push({ op, args, results, attrs });
    return results;
  };
  const [x] = emit('gather', [h.value, rows.value], {}, [f32('#r', d.D)]) as [Value];
  const [n] = emit('rmsnorm', [x, wn.value], { eps: 1e-5 }, [f32('#r', d.D)]) as [Value];
  const [q2] = emit('linear', [n, wq.value, bq.value], {}, [f32('#r', d.H * d.hd)]) as [Value];
  const [k2] = emit('linear', [n, wk.value], {}, [f32('#r', d.KVH * d.hd)]) as [Value];
  const [v2] = emit('linear', [n, wv.value], {}, [f32('#r', d.KVH * d.hd)]) as [Value];
  const [q3] = emit('reshape', [q2], { inner: [d.H, d.hd] }, [f32('#r', d.H, d.hd)]) as [Value];
  const [k3] = emit('reshape', [k2], { inner: [d.KVH, d.hd] }, [f32('#r', d.KVH, d.hd)]) as [Value];
  const [v3] = emit('reshape', [v2], { inner: [d.KVH, d.hd] }, [f32('#r', d.KVH, d.hd)]) as [Value];
  const [qr] = emit('rope', [q3, rows.value], { theta: 10000 }, [f32('#r', d.H, d.hd)]) as [Value];
  const [kr] = emit('rope', [k3, rows.value], { theta: 10000 }, [f32('#r', d.KVH, d.hd)]) as [Value];
  const [o, lse] = emit(
    'attention',
    [qr, kr, v3, rows.value, rows.value, blocks.value],
    { scale: 1 / Math.sqrt(d.hd), mask: 'block_causal' },
    [f32('#r', d.H, d.hd), f32('#r', d.H)],
  ) as [Value, Value];
  emit('cache_write', [rows.value, kr], { resource: 'k0' }, []);
  emit('cache_write', [rows.value, v3], { resource: 'v0' }, []);
  const [kc] = emit('cache_read', [], { resource: 'k0' }, [f32('L', d.KVH, d.hd)]) as [Value];
  const stage: Stage = {
    name: 'layer0',
    inputs: [h, rows, blocks, wn, wq, bq, wk, wv],
    body,
    outputs: [
      { name: 'o', value: o },
      { name: 'lse', value: lse },
      { name: 'k_cache', value: kc },
    ],
  };
  return { stage, resources, dims: d };
}

function chainInputs(c: Chain, rowList: number[]): Map<string, RuntimeValue> {
  const { D, H, KVH, hd, L } = c.dims;
  return new Map<string, RuntimeValue>([
    ['h', { shape: [L, D], data: rand(L * D, 11) }],
    ['rows', Int32Array.from(rowList)],
    ['blocks', ints([L], [-1, -1, 0, 0, 1, 1])],
    ['norm', { shape: [D], data: rand(D, 12).map((x) => 1 + x / 2) }],
    ['wq', { shape: [H * hd, D], data: rand(H * hd * D, 13) }],
    ['bq', { shape: [H * hd], data: rand(H * hd, 14) }],
    ['wk', { shape: [KVH * hd, D], data: rand(KVH * hd * D, 15) }],
    ['wv', { shape: [KVH * hd, D], data: rand(KVH * hd * D, 16) }],
  ]);
}

describe('interpretStage', () => {
  test('a chained stage equals direct computation, and cache_read sees the writes', () => {
    const c = chainStage();
    const { D, H, KVH, hd, L } = c.dims;
    const rowList = [4, 0, 2, 3];
    const inputs = chainInputs(c, rowList);
    const store = new ResourceStore(c.resources, { L });
    const out = interpretStage(c.stage, inputs, store);

    // Direct computation, op by op, with plain loops.
    const get = (name: string) => inputs.get(name) as HostTensor;
    const hT = get('h').data;
    const R = rowList.length;
    const n = new Float64Array(R * D);
    rowList.forEach((r, i) => {
      let ss = 0;
      for (let j = 0; j < D; j++) ss += (hT[r * D + j] as number) ** 2;
      const inv = 1 / Math.sqrt(ss / D + 1e-5);
      for (let j = 0; j < D; j++)
        n[i * D + j] = (hT[r * D + j] as number) * (get('norm').data[j] as number) * inv;
    });
    const lin = (w: Float64Array, outDim: number, b?: Float64Array) =>
      Float64Array.from({ length: R * outDim }, (_, e) => {
        const i = Math.floor(e / outDim);
        const o = e % outDim;
        let acc = b ? (b[o] as number) : 0;
        for (let j = 0; j < D; j++) acc += (n[i * D + j] as number) * (w[o * D + j] as number);
        return acc;
      });
    const pos = Int32Array.from(rowList);
    const q = rope(lin(get('wq').data, H * hd, get('bq').data), pos, H, hd, 10000);
    const k = rope(lin(get('wk').data, KVH * hd), pos, KVH, hd, 10000);
    const v = lin(get('wv').data, KVH * hd);
    const want = attentionPartial(q, k, v, pos, pos, {
      scale: 1 / Math.sqrt(hd),
      mask: 'block_causal',
      blocks: Int32Array.of(-1, -1, 0, 0, 1, 1),
      heads: H,
      kvHeads: KVH,
      headDim: hd,
    });
    expectNear(data(out.get('o')), [...want.o], 1e-12);
    expectNear(data(out.get('lse')), [...want.lse], 1e-12);
    // Row 0 is the only prompt row among the queries: it sees itself alone, so its output is v[row 0].
    const o = data(out.get('o'));
    const row0 = 1; // index of position 0 in rowList
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / KVH));
      expectNear(o.slice((row0 * H + h) * hd, (row0 * H + h + 1) * hd), [
        ...v.subarray((row0 * KVH + g) * hd, (row0 * KVH + g + 1) * hd),
      ]);
    }

    // The cache holds k at the written rows and NaN (never written) elsewhere.
    const kc = out.get('k_cache') as HostTensor;
    expect(kc.shape).toEqual([L, KVH, hd]);
    const w = KVH * hd;
    for (let p = 0; p < L; p++) {
      const i = rowList.indexOf(p);
      const got = [...kc.data.subarray(p * w, (p + 1) * w)];
      if (i < 0) expect(got.every(Number.isNaN)).toBe(true);
      else expectNear(got, [...k.subarray(i * w, (i + 1) * w)], 1e-12);
    }
    // cache_read returned a copy: changing it leaves the store alone, and the store has v too.
    kc.data.fill(0);
    expect(Number.isNaN(store.get('k0').data[w] as number)).toBe(true);
    expectNear(store.get('v0').data.subarray(0, w), [...v.subarray(row0 * w, (row0 + 1) * w)], 1e-12);
  });

  test('reading a row no step wrote poisons attention visibly (NaN), until it is written', () => {
    const L = 4;
    const res: Resource[] = [{ name: 'kv', kind: 'kv', dtype: 'f32', shape: ['L', 1, 2] }];
    const store = new ResourceStore(res, { L });
    const rows = val(index('#w'));
    const vals = val(f32('#w', 1, 2));
    const q = val(f32(1, 1, 2));
    const qpos = val(index(1));
    const all = val(index('L'));
    const kc = val(f32('L', 1, 2));
    const o = val(f32(1, 1, 2));
    const lse = val(f32(1, 1));
    const stage: Stage = {
      name: 'poison',
      inputs: [
        { name: 'rows', role: 'index', value: rows },
        { name: 'vals', role: 'carried', value: vals },
        { name: 'q', role: 'carried', value: q },
        { name: 'qpos', role: 'index', value: qpos },
        { name: 'all', role: 'index', value: all },
      ],
      body: [
        { op: 'cache_write', args: [rows, vals], results: [], attrs: { resource: 'kv' } },
        { op: 'cache_read', args: [], results: [kc], attrs: { resource: 'kv' } },
        {
          op: 'attention',
          args: [q, kc, kc, qpos, all],
          results: [o, lse],
          attrs: { scale: 1, mask: 'none' },
        },
      ],
      outputs: [
        { name: 'o', value: o },
        { name: 'lse', value: lse },
        { name: 'kc', value: kc },
      ],
    };
    const go = (w: number[]) =>
      interpretStage(
        stage,
        new Map<string, RuntimeValue>([
          ['rows', Int32Array.from(w)],
          ['vals', { shape: [w.length, 1, 2], data: Float64Array.from(w.flatMap((p) => [p, 1])) }],
          ['q', fromNested([[[0.5, 0.5]]])],
          ['qpos', Int32Array.of(0)],
          ['all', Int32Array.of(0, 1, 2, 3)],
        ]),
        store,
      );
    const first = go([0, 2]);
    expect(data(first.get('kc')).map(Number.isNaN)).toEqual([
      false,
      false,
      true,
      true,
      false,
      false,
      true,
      true,
    ]);
    expect(data(first.get('o')).every(Number.isNaN)).toBe(true);
    // Writes persist across calls: after rows 1 and 3 are written too, nothing is NaN.
    const second = go([1, 3]);
    expect(data(second.get('kc'))).toEqual([0, 1, 1, 1, 2, 1, 3, 1]);
    expect(data(second.get('o')).some(Number.isNaN)).toBe(false);
    // reset poisons everything again.
    store.reset();
    expect(store.get('kv').data.every(Number.isNaN)).toBe(true);
  });

  test('shape mismatches name the stage, the instruction and the op', () => {
    const c = chainStage();
    const store = new ResourceStore(c.resources, { L: c.dims.L });
    // Weight of the wrong width for its declared type f32[8].
    const bad = chainInputs(c, [0, 1]);
    bad.set('norm', { shape: [7], data: new Float64Array(7) });
    expect(() => interpretStage(c.stage, bad, store)).toThrow(
      /stage 'layer0'.*input 'norm'.*declared 8, got 7/,
    );
    // L disagrees with the store.
    const longer = chainInputs(c, [0, 1]);
    longer.set('blocks', ints([7], [-1, -1, 0, 0, 1, 1, 1]));
    expect(() => interpretStage(c.stage, longer, store)).toThrow(
      /input 'blocks'.*L is 6 in this stage, got 7/,
    );
    // Missing input.
    const missing = chainInputs(c, [0, 1]);
    missing.delete('wq');
    expect(() => interpretStage(c.stage, missing, store)).toThrow(/input 'wq'.*no value supplied/);
    // An index-list position outside the canvas.
    expect(() => interpretStage(c.stage, chainInputs(c, [0, 6]), store)).toThrow(
      /entry 1 is 6, outside \[0, 6\)/,
    );
  });

  test('a result whose runtime shape contradicts its declared type is an InterpretError', () => {
    // #r is bound to 2 by the input; the declared result claims #s rows but also reuses #r wrongly.
    const x = val(f32('#r', 3));
    const rows = val(index('#s'));
    const g = val(f32('#r', 3)); // should be #s
    const stage: Stage = {
      name: 'mismatch',
      inputs: [
        { name: 'x', role: 'carried', value: x },
        { name: 'rows', role: 'index', value: rows },
      ],
      body: [{ op: 'gather', args: [x, rows], results: [g], attrs: {} }],
      outputs: [{ name: 'g', value: g }],
    };
    const inputs = new Map<string, RuntimeValue>([
      [
        'x',
        fromNested([
          [1, 2, 3],
          [4, 5, 6],
        ]),
      ],
      ['rows', Int32Array.of(1, 0, 1)],
    ]);
    let err: unknown;
    try {
      interpretStage(stage, inputs, new ResourceStore([], { L: 4 }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InterpretError);
    const ie = err as InterpretError;
    expect(ie.stage).toBe('mismatch');
    expect(ie.instr).toBe(0);
    expect(ie.op).toBe('gather');
    expect(ie.message).toMatch(/instruction 0 \(gather\).*#r is 2 in this stage, got 3/);
    // With the right declaration it runs.
    const ok: Stage = { ...stage, body: [{ ...(stage.body[0] as Instr), results: [val(f32('#s', 3))] }] };
    expect(() =>
      interpretStage({ ...ok, outputs: [] }, inputs, new ResourceStore([], { L: 4 })),
    ).not.toThrow();
  });

  test('dtype, operand and attribute errors; unknown ops', () => {
    const store = new ResourceStore([], { L: 4 });
    expect(() => runOp('frobnicate', [T([1])], {}, [f32(1)], store)).toThrow(
      /instruction 0 \(frobnicate\).*unknown op/,
    );
    expect(() => runOp('rmsnorm', [T([[1, 2]]), T([1, 1])], {}, [f32(1, 2)], store)).toThrow(
      /attribute 'eps'/,
    );
    expect(() => runOp('add', [T([1])], {}, [f32(1)], store)).toThrow(/takes 2 operands, got 1/);
    // An i32 tensor where f32 is declared.
    expect(() =>
      runOp('add', [{ type: f32(1), value: ints([1], [1]) }, T([1])], {}, [f32(1)], store),
    ).toThrow(/input 'a0'.*expected a f32 tensor, got an i32 tensor/);
    // Declared result shape wrong.
    expect(() => runOp('add', [T([1, 2]), T([3, 4])], {}, [f32(3)], store)).toThrow(
      /result 0.*declared 3, got 2/,
    );
    // cache ops on a resource that does not exist.
    expect(() => runOp('cache_read', [], { resource: 'nope' }, [f32('L', 2)], store)).toThrow(
      /no resource 'nope'/,
    );
    // A cache write whose rows do not match the resource row shape.
    const kv = new ResourceStore([{ name: 'kv', kind: 'kv', dtype: 'f32', shape: ['L', 2] }], { L: 4 });
    expect(() => runOp('cache_write', [I([1]), T([[1, 2, 3]])], { resource: 'kv' }, [], kv)).toThrow(
      /cannot write \[1,3\]/,
    );
    // block_causal without blocks.
    expect(() =>
      runOp(
        'attention',
        [T([[[1]]]), T([[[1]]]), T([[[1]]]), I([0]), I([0])],
        { scale: 1, mask: 'block_causal' },
        [f32(1, 1, 1), f32(1, 1)],
        store,
      ),
    ).toThrow(/needs the blocks operand/);
  });

  test('ResourceStore: shapes use L, starts as NaN, rejects bad declarations', () => {
    const s = new ResourceStore(
      [
        { name: 'a', kind: 'attn', dtype: 'f32', shape: ['L', 2, 3] },
        { name: 'p', kind: 'partial', dtype: 'bf16', shape: ['L', 4] },
      ],
      { L: 5 },
    );
    expect(s.get('a').shape).toEqual([5, 2, 3]);
    expect(s.get('p').shape).toEqual([5, 4]);
    expect(s.get('a').data.length).toBe(30);
    expect(s.get('a').data.every(Number.isNaN)).toBe(true);
    expect(
      () => new ResourceStore([{ name: 'x', kind: 'kv', dtype: 'f32', shape: ['L', '#n'] }], { L: 5 }),
    ).toThrow(/neither L nor a number/);
    expect(
      () => new ResourceStore([{ name: 'x', kind: 'kv', dtype: 'f32', shape: [4, 2] }], { L: 5 }),
    ).toThrow(/first dimension must be L/);
    expect(() => s.get('nope')).toThrow(/no resource/);
  });
});
