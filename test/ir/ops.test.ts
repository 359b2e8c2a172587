import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test, vi } from 'vitest';
import { ProgramBuilder } from '../../src/ir/builder.ts';
import { interpretStage, ResourceStore } from '../../src/ir/interpret.ts';
import { opFamilies, ops } from '../../src/ir/ops.ts';
import { printProgram } from '../../src/ir/printer.ts';
import { fromNested, type HostTensor } from '../../src/ir/tensor.ts';
import { parseProgram } from '../../src/ir/textParser.ts';
import { tensor } from '../../src/ir/types.ts';
import { verifyProgram } from '../../src/ir/verify.ts';
import { canonicalizeProgram } from '../../src/passes/canonicalize.ts';
import { fuseProgram } from '../../src/passes/fusion.ts';

// Adding an op to the catalogue is all the IR side needs: the builder, verifier, text form,
// interpreter, canonicalization and fusion (with its cost) read the op's one entry.
vi.mock('../../src/ir/ops.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/ir/ops.ts')>();
  const { scale } = await import('./scaleOp.ts');
  return { ...real, ops: { ...real.ops, scale } };
});

describe('the op catalogue', () => {
  test('its families are disjoint and make up the catalogue (with the example op added here)', () => {
    const families = opFamilies.flatMap((f) => Object.keys(f.ops));
    expect(new Set(families).size).toBe(families.length);
    expect([...families, 'scale'].sort()).toEqual(Object.keys(ops).sort());
  });

  test('no IR module or pass outside src/ir/ops/ dispatches on an op by a case', () => {
    const dirs = ['src/ir', 'src/passes'];
    const names = Object.keys(ops).join('|');
    const cases = dirs.flatMap((d) =>
      readdirSync(d)
        .filter((f) => f.endsWith('.ts'))
        .flatMap((f) =>
          [...readFileSync(join(d, f), 'utf8').matchAll(new RegExp(`case '(${names})'`, 'g'))].map(
            (m) => `${d}/${f}: ${m[0]}`,
          ),
        ),
    );
    expect(cases).toEqual([]);
  });
});

describe('a new op (the scale example) through the IR pipeline', () => {
  const pb = new ProgramBuilder('example');
  const sb = pb.stage('s');
  const x = sb.input('x', 'weight', tensor('f32', [2, 3]));
  const scaled = sb.op1('scale', [x], { factor: 3 });
  sb.output('y', sb.op1('add', [scaled, x]));
  sb.finish();
  const program = pb.finish();

  test('builds, verifies and prints/parses back', () => {
    expect(verifyProgram(program)).toEqual([]);
    const text = printProgram(program);
    expect(text).toContain('scale %0 {factor = 3}');
    const parsed = parseProgram(text);
    expect(parsed.errors).toEqual([]);
    expect(printProgram(parsed.program as typeof program)).toBe(text);
    expect(verifyProgram(canonicalizeProgram(program))).toEqual([]);
  });

  test('interprets by its own semantics', () => {
    const stage = program.stages[0] as (typeof program.stages)[0];
    const out = interpretStage(
      stage,
      new Map([
        [
          'x',
          fromNested([
            [1, 2, 3],
            [-1, 0, 0.5],
          ]),
        ],
      ]),
      new ResourceStore([], { L: 2 }),
    );
    expect(Array.from((out.get('y') as HostTensor).data)).toEqual([4, 8, 12, -4, 0, 2]);
  });

  test('fuses by its class and costs what it states', () => {
    const [kernel, ...rest] = fuseProgram(program).kernels;
    expect(rest).toEqual([]);
    expect(kernel?.kind).toBe('elementwise');
    expect(kernel?.epilogue).toEqual(['add']);
    expect(kernel?.flops).toEqual([
      [1, 2, 3],
      [1, 2, 3],
    ]);
  });
});

describe('attention over one KV head', () => {
  const q = tensor('f32', ['#r', 4, 8]);
  const kv = tensor('f32', ['#k', 2, 8]);
  const args = [q, kv, kv, { kind: 'index', size: '#r' } as const, { kind: 'index', size: '#k' } as const];
  const attrs = { scale: 0.35, mask: 'none' };
  test('kv_head must name one of the KV heads', () => {
    const spec = ops.attention as NonNullable<typeof ops.attention>;
    expect(spec.results(args, { ...attrs, kv_head: 1 })).toEqual([q, tensor('f32', ['#r', 4])]);
    for (const bad of [2, -1, 0.5])
      expect(spec.results(args, { ...attrs, kv_head: bad })).toMatch(/^kv_head must be a KV head, 0 to 1/);
  });
});
