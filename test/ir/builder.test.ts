import { describe, expect, it } from 'vitest';
import { IdSource, IRBuildError, ProgramBuilder, StageBuilder } from '../../src/ir/builder.ts';
import { index, printType, type Resource, tensor } from '../../src/ir/types.ts';

const kv: Resource = { name: 'kv.k.0', kind: 'kv', dtype: 'f32', shape: ['L', 2, 8] };

describe('StageBuilder', () => {
  it('infers result types with the op rules', () => {
    const sb = new StageBuilder('layer.0', new IdSource());
    const h = sb.input('h', 'carried', tensor('f32', ['L', 32]));
    const rows = sb.input('rows.0', 'index', index('#rows.0'));
    const x = sb.op1('gather', [h, rows]);
    expect(printType(x.type)).toBe('f32[#rows.0,32]');
    const w = sb.input('w', 'weight', tensor('f32', [64, 32]));
    const b = sb.input('b', 'weight', tensor('f32', [64]));
    expect(printType(sb.op1('linear', [x, w, b]).type)).toBe('f32[#rows.0,64]');
    const q = sb.op1('reshape', [sb.op1('linear', [x, w])], { inner: [8, 8] });
    expect(printType(q.type)).toBe('f32[#rows.0,8,8]');
    const k = sb.op1('gather', [sb.cacheRead(kv), rows]);
    expect(printType(k.type)).toBe('f32[#rows.0,2,8]');
    const [o, lse] = sb.op('attention', [q, k, k, rows, rows], { scale: 0.35, mask: 'none' });
    expect([o, lse].map((v) => printType(v?.type ?? index(0)))).toEqual([
      'f32[#rows.0,8,8]',
      'f32[#rows.0,8]',
    ]);
    expect(sb.op('cache_write', [rows, k], { resource: 'kv.k.0' })).toEqual([]);
  });

  it('numbers values consecutively from the shared id source', () => {
    const ids = new IdSource(10);
    const sb = new StageBuilder('s', ids);
    const a = sb.input('a', 'carried', tensor('f32', ['L', 4]));
    const b = sb.op1('add', [a, a]);
    expect([a.id, b.id, ids.peek()]).toEqual([10, 11, 12]);
  });

  it('names the op, the stage and the operand types when a rule rejects the operands', () => {
    const sb = new StageBuilder('layer.3', new IdSource());
    const x = sb.input('x', 'carried', tensor('f32', ['L', 32]));
    const w = sb.input('w', 'weight', tensor('f32', [16]));
    expect(() => sb.op('rmsnorm', [x, w], { eps: 1e-5 })).toThrow(
      new IRBuildError(
        'stage layer.3: rmsnorm(f32[L,32], f32[16]): rmsnorm needs f32[N,D] or f32[N,H,D] (constant inner dims) and f32[D], got f32[L,32], f32[16]',
      ),
    );
  });

  it('rejects unknown ops, wrong operand counts and bad attributes', () => {
    const sb = new StageBuilder('s', new IdSource());
    const x = sb.input('x', 'carried', tensor('f32', ['L', 4]));
    expect(() => sb.op('frobnicate', [x])).toThrow(
      /stage s: frobnicate\(f32\[L,4\]\): unknown op 'frobnicate'/,
    );
    expect(() => sb.op('add', [x])).toThrow(/takes 2 operands \(a, b\), got 1/);
    expect(() => sb.op('linear', [x])).toThrow(/takes 2 to 3 operands/);
    expect(() => sb.op('rmsnorm', [x, x])).toThrow(/missing attribute 'eps' \(number\)/);
    expect(() => sb.op('add', [x, x], { alpha: 1 })).toThrow(/unknown attribute 'alpha'/);
    expect(() => sb.op('reshape', [x], { inner: 'wide' })).toThrow(
      /attribute 'inner' must be a list of finite numbers/,
    );
    const w = sb.input('w', 'weight', tensor('f32', [4]));
    expect(() => sb.op('rmsnorm', [x, w], { eps: Number.NaN })).toThrow(
      /attribute 'eps' must be a finite number/,
    );
    expect(() => sb.op('cache_read', [], { resource: 'kv' })).toThrow(/use cacheRead/);
  });

  it('op1 insists on exactly one result', () => {
    const sb = new StageBuilder('s', new IdSource());
    const q = sb.input('q', 'carried', tensor('f32', ['#r', 2, 4]));
    const r = sb.input('r', 'index', index('#r'));
    expect(() => sb.op1('attention', [q, q, q, r, r], { scale: 1, mask: 'none' })).toThrow(
      /attention has 2 results/,
    );
  });

  it('rejects values of other stages, duplicate names and use after finish', () => {
    const pb = new ProgramBuilder('p');
    const a = pb.stage('a');
    const h = a.input('h', 'carried', tensor('f32', ['L', 4]));
    const b = pb.stage('b');
    expect(() => b.op('add', [h, h])).toThrow(/stage b: operand 1 of add %0 is not defined in this stage/);
    expect(() => b.output('h', h)).toThrow(/output 'h' %0 is not defined/);
    expect(() => a.input('h', 'carried', tensor('f32', ['L', 4]))).toThrow(/duplicate input 'h'/);
    a.output('h', h);
    expect(() => a.output('h', h)).toThrow(/duplicate output 'h'/);
    a.finish();
    expect(() => a.op('add', [h, h])).toThrow(/the stage is finished/);
    expect(() => pb.stage('a')).toThrow(/duplicate stage 'a'/);
  });

  it('checks that cache writes store rows of the resource row type', () => {
    const sb = new StageBuilder('s', new IdSource());
    const rows = sb.input('rows', 'index', index('#r'));
    const bad = sb.input('x', 'carried', tensor('f32', ['#r', 4, 8]));
    expect(() => sb.cacheWrite(kv, rows, bad)).toThrow(
      'stage s: cache_write to kv.k.0: rows of f32[#r,4,8] are f32[4,8], the resource holds f32[2,8]',
    );
    const wrongRows = sb.input('y', 'carried', tensor('f32', ['#other', 2, 8]));
    expect(() => sb.cacheWrite(kv, rows, wrongRows)).toThrow(
      /cache_write needs an index list and matching rows/,
    );
  });
});

describe('ProgramBuilder', () => {
  it('dedupes resources by name and rejects conflicting redeclarations', () => {
    const pb = new ProgramBuilder('p');
    const r1 = pb.resource(kv);
    expect(pb.resource({ ...kv, shape: ['L', 2, 8] })).toBe(r1);
    expect(() => pb.resource({ ...kv, shape: ['L', 4, 8] })).toThrow(
      /resource kv.k.0 redeclared as kv.k.0: f32\[L,4,8\] kv, was kv.k.0: f32\[L,2,8\] kv/,
    );
    expect(() => pb.resource({ ...kv, kind: 'attn' })).toThrow(/redeclared/);
    expect(() => pb.resource({ name: 'bad', kind: 'kv', dtype: 'f32', shape: [4, 8] })).toThrow(
      /first dimension/,
    );
  });

  it('declares the resources that stages read and write, and keeps ids unique across stages', () => {
    const pb = new ProgramBuilder('p');
    const s0 = pb.stage('s0');
    const rows = s0.input('rows', 'index', index('#rows'));
    const k = s0.op1('gather', [s0.cacheRead(kv), rows]);
    s0.cacheWrite(kv, rows, k);
    s0.finish();
    const s1 = pb.stage('s1');
    const x = s1.input('x', 'carried', tensor('f32', ['L', 4]));
    const p = pb.finish();
    expect(p.resources).toEqual([kv]);
    expect(p.stages.map((s) => s.name)).toEqual(['s0', 's1']);
    expect(x.id).toBe(3);
    const ids = p.stages.flatMap((s) => [
      ...s.inputs.map((i) => i.value.id),
      ...s.body.flatMap((i) => i.results.map((r) => r.id)),
    ]);
    expect(new Set(ids).size).toBe(ids.length);
    expect(p.stages[0]?.body.map((i) => [i.op, i.attrs])).toEqual([
      ['cache_read', { resource: 'kv.k.0' }],
      ['gather', {}],
      ['cache_write', { resource: 'kv.k.0' }],
    ]);
  });
});
