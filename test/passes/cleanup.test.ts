import { describe, expect, test } from 'vitest';
import { ProgramBuilder } from '../../src/ir/builder.ts';
import { printProgram } from '../../src/ir/printer.ts';
import { index, type Resource, type Stage, type StepProgram, tensor } from '../../src/ir/types.ts';
import { verifyProgram } from '../../src/ir/verify.ts';
import { canonicalizeProgram } from '../../src/passes/canonicalize.ts';
import { cseProgram } from '../../src/passes/cse.ts';
import { dceProgram } from '../../src/passes/dce.ts';

const kRes: Resource = { name: 'kv.k.0', kind: 'kv', dtype: 'f32', shape: ['L', 2, 4] };

/** One layer stage, built by `body`; an embed stage in front supplies the carried `h`. */
function program(body: (sb: ReturnType<ProgramBuilder['stage']>) => void): StepProgram {
  const pb = new ProgramBuilder('t.cached');
  const embed = pb.stage('embed');
  const tokens = embed.input('tokens', 'tokens', tensor('i32', ['L']));
  const table = embed.input('model.embed_tokens.weight', 'weight', tensor('f32', [16, 8]));
  embed.output('h', embed.op1('embed', [table, tokens]));
  embed.finish();
  const sb = pb.stage('layer.0');
  body(sb);
  sb.finish();
  return pb.finish();
}

const layer = (p: StepProgram): Stage => {
  const s = p.stages.find((x) => x.name === 'layer.0');
  if (!s) throw new Error('no layer.0');
  return s;
};
const ops = (p: StepProgram): string[] => layer(p).body.map((i) => i.op);
const clean = (p: StepProgram) => expect(verifyProgram(p).map((e) => e.message)).toEqual([]);

describe('canonicalize', () => {
  test('folds a reshape of a reshape into one reshape of the source', () => {
    const p = program((sb) => {
      const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
      const a = sb.op1('reshape', [h], { inner: [2, 4] });
      const b = sb.op1('reshape', [a], { inner: [4, 2] });
      sb.output('h2', b);
    });
    const q = canonicalizeProgram(p);
    clean(q);
    const last = layer(q).body[1];
    expect(last?.op).toBe('reshape');
    expect(last?.args[0]?.id).toBe(layer(q).inputs[0]?.value.id);
    expect(last?.attrs.inner).toEqual([4, 2]);
    // The bypassed reshape is dead now; DCE removes it.
    expect(ops(dceProgram(q))).toEqual(['reshape']);
  });

  test('a reshape back to the original shape is the value itself', () => {
    const p = program((sb) => {
      const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
      const a = sb.op1('reshape', [h], { inner: [2, 4] });
      sb.output('h', sb.op1('reshape', [a], { inner: [8] }));
    });
    const q = dceProgram(canonicalizeProgram(p));
    clean(q);
    expect(ops(q)).toEqual([]);
    expect(layer(q).outputs[0]?.value.id).toBe(layer(q).inputs[0]?.value.id);
  });

  test('gather(place(x, r), r) and gather(scatter(b, r, x), r) with the same r give x', () => {
    const p = program((sb) => {
      const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
      const rows = sb.input('rows.0', 'index', index('#rows.0'));
      const x = sb.op1('gather', [h, rows]);
      const placed = sb.op1('gather', [sb.op1('place', [x, rows]), rows]);
      const scattered = sb.op1('gather', [sb.op1('scatter', [h, rows, x]), rows]);
      sb.output('a', placed);
      sb.output('b', scattered);
    });
    const q = dceProgram(canonicalizeProgram(p));
    clean(q);
    expect(ops(q)).toEqual(['gather']);
    const x = layer(q).body[0]?.results[0]?.id;
    expect(layer(q).outputs.map((o) => o.value.id)).toEqual([x, x]);
  });

  test('does not fold a gather through a different index list', () => {
    const p = program((sb) => {
      const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
      const rows = sb.input('rows.0', 'index', index('#rows.0'));
      const other = sb.input('write.0.1', 'index', index('#rows.0'));
      const x = sb.op1('gather', [h, rows]);
      sb.output('a', sb.op1('gather', [sb.op1('place', [x, rows]), other]));
      sb.output('b', sb.op1('gather', [sb.op1('scatter', [h, rows, x]), other]));
    });
    const q = dceProgram(canonicalizeProgram(p));
    expect(ops(q)).toEqual(ops(p));
  });

  test('orders add operands by value id, so that CSE sees a + b and b + a as one', () => {
    const p = program((sb) => {
      const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
      const g = sb.op1('swiglu', [h, h]);
      sb.output('a', sb.op1('add', [g, h]));
      sb.output('b', sb.op1('add', [h, g]));
    });
    const q = canonicalizeProgram(p);
    for (const i of layer(q).body.filter((x) => x.op === 'add'))
      expect((i.args[0]?.id ?? 0) < (i.args[1]?.id ?? 0)).toBe(true);
    const r = dceProgram(cseProgram(q));
    clean(r);
    expect(ops(r)).toEqual(['swiglu', 'add']);
    const [a, b] = layer(r).outputs;
    expect(a?.value.id).toBe(b?.value.id);
  });

  test('returns the very program when nothing applies', () => {
    const p = program((sb) => {
      const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
      sb.output('h', sb.op1('reshape', [h], { inner: [2, 4] }));
    });
    expect(canonicalizeProgram(p)).toBe(p);
  });
});

describe('cse', () => {
  test('merges identical pure instructions and rewires later uses and outputs', () => {
    const p = program((sb) => {
      const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
      const rows = sb.input('rows.0', 'index', index('#rows.0'));
      const w = sb.input('model.layers.0.input_layernorm.weight', 'weight', tensor('f32', [8]));
      const a = sb.op1('rmsnorm', [sb.op1('gather', [h, rows]), w], { eps: 1e-5 });
      const b = sb.op1('rmsnorm', [sb.op1('gather', [h, rows]), w], { eps: 1e-5 });
      const c = sb.op1('rmsnorm', [sb.op1('gather', [h, rows]), w], { eps: 1e-6 });
      sb.output('s', sb.op1('add', [a, b]));
      sb.output('t', c);
    });
    const q = cseProgram(p);
    clean(q);
    // The second gather and rmsnorm go; the one with another eps stays.
    expect(ops(q)).toEqual(['gather', 'rmsnorm', 'rmsnorm', 'add']);
    const add = layer(q).body[3];
    expect(add?.args[0]?.id).toBe(add?.args[1]?.id);
  });

  test('merges reads of a resource, but not across a write to it, and never merges writes', () => {
    const p = program((sb) => {
      sb.input('h', 'carried', tensor('f32', ['L', 8]));
      const rows = sb.input('rows.0', 'index', index('#rows.0'));
      const r1 = sb.cacheRead(kRes);
      const r2 = sb.cacheRead(kRes);
      const g1 = sb.op1('gather', [r1, rows]);
      sb.cacheWrite(kRes, rows, g1);
      sb.cacheWrite(kRes, rows, sb.op1('gather', [r2, rows]));
      const r3 = sb.cacheRead(kRes);
      sb.output('x', r3);
      sb.output('y', r1);
    });
    const q = cseProgram(p);
    clean(q);
    expect(ops(q)).toEqual(['cache_read', 'gather', 'cache_write', 'cache_write', 'cache_read']);
    const [x, y] = layer(q).outputs;
    expect(x?.value.id).not.toBe(y?.value.id);
  });

  test('does not merge across stages', () => {
    const pb = new ProgramBuilder('t');
    for (const name of ['a', 'b']) {
      const sb = pb.stage(name);
      const t = sb.input('tokens', 'tokens', tensor('i32', ['L']));
      const w = sb.input('model.embed_tokens.weight', 'weight', tensor('f32', [16, 8]));
      sb.output(`h.${name}`, sb.op1('embed', [w, t]));
      sb.finish();
    }
    const p = pb.finish();
    expect(cseProgram(p)).toBe(p);
  });
});

describe('dce', () => {
  test('removes unused pure instructions and unused index and weight inputs', () => {
    const p = program((sb) => {
      const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
      const rows = sb.input('rows.0', 'index', index('#rows.0'));
      sb.input('keys.0', 'index', index('#keys.0'));
      const w = sb.input('model.layers.0.input_layernorm.weight', 'weight', tensor('f32', [8]));
      sb.input('model.layers.0.unused.weight', 'weight', tensor('f32', [8]));
      const x = sb.op1('gather', [h, rows]);
      sb.op1('rmsnorm', [x, w], { eps: 1e-5 });
      sb.output('x', x);
    });
    const q = dceProgram(p);
    clean(q);
    expect(ops(q)).toEqual(['gather']);
    expect(layer(q).inputs.map((i) => i.name)).toEqual(['h', 'rows.0']);
  });

  test('keeps cache writes (and what they read), outputs’ producers, and carried/tokens/blocks inputs', () => {
    const p = program((sb) => {
      sb.input('h', 'carried', tensor('f32', ['L', 8]));
      sb.input('blocks', 'blocks', tensor('i32', ['L']));
      const tokens = sb.input('tokens', 'tokens', tensor('i32', ['L']));
      const rows = sb.input('rows.0', 'index', index('#rows.0'));
      const r = sb.cacheRead(kRes);
      sb.cacheWrite(kRes, rows, sb.op1('gather', [r, rows]));
      const w = sb.input('model.embed_tokens.weight', 'weight', tensor('f32', [16, 8]));
      sb.output('e', sb.op1('embed', [w, tokens]));
    });
    const q = dceProgram(p);
    clean(q);
    expect(q).toBe(p);
    expect(ops(q)).toEqual(['cache_read', 'gather', 'cache_write', 'embed']);
    expect(layer(q).inputs.map((i) => i.role)).toEqual(['carried', 'blocks', 'tokens', 'index', 'weight']);
  });

  test('removes chains that only feed dead code, and an unused carried input stays', () => {
    const p = program((sb) => {
      const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
      const a = sb.op1('reshape', [h], { inner: [2, 4] });
      sb.op1('reshape', [a], { inner: [8] });
    });
    const q = dceProgram(p);
    clean(q);
    expect(ops(q)).toEqual([]);
    expect(layer(q).inputs.map((i) => i.name)).toEqual(['h']);
    expect(printProgram(q)).toContain('in %3: f32[L,8] = carried h');
  });
});
