/**
 * Deep models (issue 21): layers that run the same kernels share one C function, so the generated
 * unit, and gcc's time on it, does not grow with the layer count beyond a table row and a
 * one-line call per layer; and the shared code computes what the reference does.
 */
import { describe, expect, test } from 'vitest';
import { renderC } from '../../../src/backends/cpu/render.ts';
import { type StageCode, shareStages } from '../../../src/backends/cpu/share.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { examplePlan } from '../../runtime/support.ts';
import { expectCpuMatchesReference } from './againstReference.ts';

const deep = (layers: number): ModelConfig => ({ ...(presets.tiny as ModelConfig), layers });

const render = (name: string, config: ModelConfig) => {
  const { state } = compilePlan(examplePlan(name), config, { target: 'cpu', canvas: 16 });
  if (!state.kernels || !state.memory) throw new Error('no kernels');
  return renderC(config, state.phases, state.kernels, state.memory, 16);
};

describe('a deep model renders a unit whose size does not grow with its layers', () => {
  test.each(['dllm-cache', 'fast-dllm-dual'])('%s: 4 and 64 layers', (name) => {
    const [shallow, tall] = [render(name, deep(4)), render(name, deep(64))];
    const calls = (source: string) => source.match(/\bkv_[a-z0-9_]+\(/g)?.length;
    // The same kernel code, once, whatever the depth.
    expect(calls(tall.source)).toBe(calls(shallow.source));
    // Per layer and phase: one row of the shared body's table and one exported one-line function.
    const phases = Object.keys(tall.manifest.phases).length;
    const lines = (source: string) => source.split('\n').length;
    expect(lines(tall.source) - lines(shallow.source)).toBeLessThanOrEqual(60 * 2 * phases);
    for (const stages of Object.values(tall.manifest.phases))
      for (const s of stages.filter((st) => st.name.startsWith('layer.')))
        expect(tall.source).toMatch(
          new RegExp(
            `^void ${s.fn}\\(const int32_t \\*N\\) \\{ kvp_shared_\\d+\\(N, T\\d+\\[\\d+\\]\\); \\}$`,
            'm',
          ),
        );
  });
});

describe('shareStages', () => {
  const stage = (i: number, lines: string[]): StageCode => ({
    stage: `layer.${i}`,
    fn: `kvp_x_layer_${i}`,
    title: `/* layer ${i} */`,
    lines,
  });
  const body = (i: number, n = 32) => [
    `/* kernel layer.${i}/0.norm (norm) */`,
    `kv_rmsnorm(N[${1 + i}], ${n}, (A + ${512 * (i + 1)}), 0, ((float *)S[${7 + i}]), 0.00001f, (A + 64));`,
    `const int saved_${40 + i} = kv_rows_within(N[${1 + i}], 0, N[0], 0, N[0]);`,
    `if (D[${7 + i}]) kv_gemm16(N[0], 8, 8, (A + 64), 8, 0, (const uint16_t *)P[${7 + i}], D[${7 + i}], 0, (A + 0), 8, saved_${40 + i});`,
  ];

  test('bodies equal but for their numbers become one function over a table, row by row', () => {
    const c = shareStages([stage(0, body(0)), stage(1, body(1)), stage(2, body(2, 64))]).join('\n');
    // S, P and D of one slot share a column; the arena offset 64 is a column of its own.
    expect(c).toContain(
      'static const int64_t T0[2][6] = {\n  {1, 512, 7, 64, 0, 0},\n  {2, 1024, 8, 64, 0, 0},\n};',
    );
    expect(c).toContain(
      '  kv_rmsnorm(N[I[0]], 32, (A + I[1]), 0, ((float *)S[I[2]]), 0.00001f, (A + I[3]));\n' +
        '  const int saved_0 = kv_rows_within(N[I[0]], 0, N[I[4]], 0, N[I[4]]);',
    );
    expect(c).toContain('  /* kernel 0.norm (norm) */');
    expect(c).toContain('void kvp_x_layer_1(const int32_t *N) { kvp_shared_0(N, T0[1]); }');
    // A body that differs in anything else (a width) stays a function of its own.
    expect(c).toContain(
      `/* layer 2 */\nvoid kvp_x_layer_2(const int32_t *N) {\n  float *A = (float *)S[ARENA];\n  ${body(2, 64).join('\n  ')}\n}`,
    );
  });

  test('bodies with the same numbers share a function without a table', () => {
    const c = shareStages([stage(0, body(0)), { ...stage(0, body(0)), fn: 'kvp_y_layer_0' }]).join('\n');
    expect(c).not.toContain('static const int64_t');
    expect(c).toContain('static void kvp_shared_0(const int32_t *N) {');
    expect(c).toContain('(A + 64), 8, 0, (const uint16_t *)P[7], D[7], 0, (A + 0), 8, saved_0);');
    expect(c).toContain('void kvp_y_layer_0(const int32_t *N) { kvp_shared_0(N); }');
  });
});

describe('shared layer code against the float64 reference', () => {
  test.each(['dllm-cache', 'fast-dllm-dual'])(
    '%s on 6 layers: every step within the float32 budget',
    async (name) => {
      const build = await expectCpuMatchesReference(examplePlan(name), deep(6), 5);
      expect(build.source).toContain('kvp_shared_');
    },
  );
});
