import { spawnSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { compilerSettings, INCLUDE_DIR } from '../../../src/backends/cpu/compiler.ts';
import { renderC } from '../../../src/backends/cpu/render.ts';
import { PLAN_FLAGS } from '../../../src/backends/cpu/runner.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { examplePlan, examples } from '../../runtime/support.ts';

const render = (name: string, config: ModelConfig) => {
  const { state } = compilePlan(examplePlan(name), config, { target: 'cpu', canvas: 16 });
  if (!state.kernels || !state.memory) throw new Error('no kernels');
  return renderC(config, state.phases, state.kernels, state.memory, 16);
};

describe('C renderer', () => {
  test('the generated C of one plan is pinned', () => {
    const one = { ...(presets.tiny as ModelConfig), layers: 1 };
    expect(render('fast-dllm-dual', one).source).toMatchSnapshot();
  });
  test('one C function per stage and phase; index lists and sizes are runtime inputs', () => {
    const { source, manifest } = render('flashblock', presets.tiny as ModelConfig);
    expect(Object.keys(manifest.phases).sort()).toEqual(['cached', 'refresh', 'reuse']);
    for (const stages of Object.values(manifest.phases)) {
      for (const s of stages) expect(source).toContain(`void ${s.fn}(const int32_t *N) {`);
    }
    expect(manifest.sizes[0]).toBe('L');
    expect(manifest.sizes).toContain('#rows.0');
    expect(manifest.slots.filter((s) => s.kind === 'list').map((s) => s.name)).toContain(
      'list:keys.0.internal',
    );
    // Plan text never reaches the C source except as sanitised identifiers.
    expect(source).not.toMatch(/dirty|block_start|current_block/);
  });
});

describe('pointwise loops', () => {
  // The assertion reads x86 mnemonics: scalar adds are `addss`, vector adds `addps`.
  const x86 = process.arch === 'x64';
  if (!x86) console.log(`pointwise loops: skipped: the check reads x86-64 code, this is ${process.arch}`);
  test.runIf(x86)('compile to vector adds, a gathered operand read through its list too', () => {
    // dllm-cache adds back the cached attention and FFN outputs of the rows it skips (gathered
    // operands) and adds each layer's residual (plain ones).
    const { source } = render('dllm-cache', presets.small as ModelConfig);
    expect(source).toMatch(/for \(int64_t r = 0, n = [^;]+; r < n; r\+\+\) \{ _Pragma\("GCC ivdep"\)/);
    expect(source).toMatch(/_Pragma\("GCC ivdep"\) for \(int64_t i = 0/);
    // The compiler and flags a plan's library is built with (KVPLAN_CC, KVPLAN_CFLAGS included).
    const settings = compilerSettings({ flags: PLAN_FLAGS });
    const flags = settings.flags.filter((f) => f !== '-shared' && f !== '-fPIC');
    const cc = spawnSync(settings.cc, [...flags, '-I', INCLUDE_DIR, '-S', '-x', 'c', '-', '-o', '-'], {
      input: source,
      encoding: 'utf8',
    });
    expect(cc.status, cc.stderr).toBe(0);
    // The stage functions: each from its label to its `.size` directive.
    const stages = [...cc.stdout.matchAll(/^(kvp_shared_\d+):\n[\s\S]*?\.size\s+\1,/gm)]
      .map((m) => m[0])
      .join('\n');
    expect(stages).toContain('kvp_shared_');
    expect(stages).toMatch(/\bvaddps\b/);
    expect(stages).not.toMatch(/\bv?addss\b/);
  });
});

describe('limits', () => {
  test('a head dimension beyond what kv_attention supports is refused with a clear error', () => {
    const wide = { ...(presets.tiny as ModelConfig), heads: 1, kvHeads: 1, headDim: 2048, dModel: 2048 };
    expect(() => render('baseline', wide)).toThrow(/head_dim 2048 exceeds the CPU backend's maximum 1024/);
  });

  test.each(examples)(
    '%s: no GEMM writes over its own input (a scratch value read by the next kernel)',
    (name) => {
      const { source } = render(name, presets.small as ModelConfig);
      const calls = [...source.matchAll(/kv_gemm\(([^;]*)\);/g)].map((m) => (m[1] as string).split(', '));
      expect(calls.length).toBeGreaterThan(0);
      // kv_gemm(m, n, k, a, lda, arows, packed, bias, c, ldc, accumulate)
      for (const args of calls) expect(args[8]).not.toBe(args[3]);
    },
  );
});
