import { describe, expect, test } from 'vitest';
import { lowerPlan } from '../../src/ir/lower.ts';
import { printProgram } from '../../src/ir/printer.ts';
import { parseProgram } from '../../src/ir/textParser.ts';
import { verifyPlan } from '../../src/ir/verify.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { examplePlan, examples } from './support.ts';

const configs = ['tiny', 'small', 'llada-8b', 'dream-7b', 'sdar-8b'].map((n) => presets[n] as ModelConfig);

describe('lowering every example plan', () => {
  test.each(examples)(
    '%s lowers to step programs that verify and print/parse back, for every preset',
    (name) => {
      const plan = examplePlan(name, 32);
      for (const config of configs) {
        const lowered = lowerPlan(plan, config);
        const programs = [
          lowered.programs.refresh,
          lowered.programs.cached,
          ...(lowered.programs.reuse ? [lowered.programs.reuse] : []),
        ];
        expect(verifyPlan(programs)).toEqual([]);
        for (const p of programs) {
          expect(p.stages.map((s) => s.name)).toEqual([
            'embed',
            ...Array.from({ length: config.layers }, (_, l) => `layer.${l}`),
            'head',
          ]);
          const text = printProgram(p);
          expect(printProgram(parseProgram(text).program ?? p)).toBe(text);
          expect(parseProgram(text).errors).toEqual([]);
        }
      }
    },
  );

  test('the refresh phase reads no cache; the cached phase reads the K/V cache of every layer that has one', () => {
    const lowered = lowerPlan(examplePlan('fast-dllm-dual'), presets.tiny as ModelConfig);
    const reads = (p: typeof lowered.programs.cached) =>
      p.stages.flatMap((s) =>
        s.body.filter((i) => i.op === 'cache_read').map((i) => String(i.attrs.resource)),
      );
    expect(reads(lowered.programs.refresh)).toEqual([]);
    expect(reads(lowered.programs.cached)).toEqual(['kv.k.0', 'kv.v.0', 'kv.k.1', 'kv.v.1']);
    expect(lowered.programs.reuse).toBeUndefined();
  });

  test('hoisting gives only plans that reuse a split segment a reuse phase, which reads the stored partial', () => {
    expect(
      compilePlan(examplePlan('fast-dllm-dual'), presets.tiny as ModelConfig, { target: 'reference' }).lowered
        .programs.reuse,
    ).toBeUndefined();
    const { lowered } = compilePlan(examplePlan('flashblock'), presets.tiny as ModelConfig, {
      target: 'reference',
    });
    const reuse = lowered.programs.reuse;
    expect(reuse).toBeDefined();
    const reads = reuse?.stages.flatMap((s) =>
      s.body.filter((i) => i.op === 'cache_read').map((i) => String(i.attrs.resource)),
    );
    expect(reads).toContain('partial.o.0.external');
    expect(reads).toContain('partial.lse.0.external');
    const attentions = (p: typeof reuse) =>
      p?.stages.flatMap((s) => s.body.filter((i) => i.op === 'attention')).length;
    // One attention per layer fewer: the external segment's partial is read, not recomputed.
    expect(attentions(reuse)).toBe((attentions(lowered.programs.cached) ?? 0) - 2);
  });

  test('index lists are stage inputs, never constants', () => {
    const lowered = lowerPlan(examplePlan('sparse-dllm'), presets.tiny as ModelConfig);
    const stage = lowered.programs.cached.stages.find((s) => s.name === 'layer.1');
    expect(stage?.inputs.filter((i) => i.role === 'index').map((i) => i.name)).toEqual([
      'rows.1',
      'keys.1',
      'write.1.4',
    ]);
  });
});
