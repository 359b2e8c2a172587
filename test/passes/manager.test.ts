import { describe, expect, test } from 'vitest';
import { lowerPlan } from '../../src/ir/lower.ts';
import { printProgram } from '../../src/ir/printer.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import type { KernelProgram } from '../../src/passes/kernelIR.ts';
import {
  cleanupPasses,
  dumpState,
  initialState,
  PassError,
  runPipeline,
  withPhases,
} from '../../src/passes/manager.ts';
import type { MemoryPlan } from '../../src/passes/memory.ts';
import type { Pass, PassContext, PipelineState } from '../../src/passes/state.ts';
import { examplePlan } from '../runtime/support.ts';

const config: ModelConfig = { ...(presets.tiny as ModelConfig), layers: 2 };
const ctx: PassContext = { config, target: 'reference' };
const lowered = (name: string) => lowerPlan(examplePlan(name), config);

/** A deliberately broken pass: drops the first instruction of every layer stage (a gather others use). */
const breaking: Pass = {
  name: 'drop-first',
  description: 'removes a needed instruction',
  run: (s) => ({
    ...s,
    phases: new Map(
      [...s.phases].map(([k, p]) => [
        k,
        {
          ...p,
          stages: p.stages.map((st) =>
            st.name.startsWith('layer.') ? { ...st, body: st.body.slice(1) } : st,
          ),
        },
      ]),
    ),
  }),
};

const identity = (name: string): Pass => ({ name, description: 'changes nothing', run: (s) => s });

describe('initialState / withPhases', () => {
  test('the phases are the lowered programs; reuse only when the plan has one', () => {
    const l = lowered('fast-dllm-dual');
    const s = initialState(l);
    expect([...s.phases.keys()]).toEqual(['refresh', 'cached']);
    expect(s.phases.get('cached')).toBe(l.programs.cached);
    // The reuse phase, once some pass or lowering provides one, travels along.
    const withReuse = { ...l, programs: { ...l.programs, reuse: l.programs.cached } };
    expect([...initialState(withReuse).phases.keys()]).toEqual(['refresh', 'cached', 'reuse']);
  });

  test("withPhases runs the state's programs and layer rules", () => {
    const l = lowered('flashblock');
    const { state } = runPipeline(initialState(l), cleanupPasses, ctx);
    const w = withPhases(l, state);
    expect(w.programs.refresh).toBe(state.phases.get('refresh'));
    expect(w.programs.reuse).toBeUndefined();
    const reuse = l.programs.cached;
    const added: PipelineState = { ...state, phases: new Map([...state.phases, ['reuse', reuse]]) };
    expect(withPhases(l, added).programs.reuse).toBe(reuse);
    expect(w.layers).toBe(state.lowered.layers);
    expect(w.name).toBe(l.name);
    const s2: PipelineState = { lowered: l, phases: new Map([['refresh', l.programs.refresh]]) };
    expect(() => withPhases(l, s2)).toThrow(PassError);
  });
});

describe('runPipeline', () => {
  test('reports one timing per pass, in order', () => {
    const { timings } = runPipeline(initialState(lowered('baseline')), cleanupPasses, ctx);
    expect(timings.map((t) => t.pass)).toEqual(['set-algebra', 'canonicalize', 'cse', 'dce']);
    for (const t of timings) expect(t.ms).toBeGreaterThanOrEqual(0);
  });

  test('dumpAfter dumps after the named passes only; dumpAll after every pass', () => {
    const start = initialState(lowered('fast-dllm-dual'));
    const dumps: [string, string][] = [];
    runPipeline(start, cleanupPasses, ctx, {
      dumpAfter: ['cse', 'set-algebra'],
      onDump: (p, t) => dumps.push([p, t]),
    });
    expect(dumps.map(([p]) => p)).toEqual(['set-algebra', 'cse']);
    const text = dumps[0]?.[1] ?? '';
    expect(text).toContain(printProgram(start.phases.get('refresh') as never).trimEnd());
    expect(text).toContain('program fast_dllm_dual.cached {');
    expect(text).toContain('layer 0: compute current_block; attend all; cache#3 all; refresh all');
    const all: string[] = [];
    runPipeline(start, cleanupPasses, ctx, { dumpAll: true, onDump: (p) => all.push(p) });
    expect(all).toEqual(['set-algebra', 'canonicalize', 'cse', 'dce']);
  });

  test('a pass that occurs twice is dumped after each occurrence', () => {
    const seen: string[] = [];
    runPipeline(initialState(lowered('baseline')), [identity('a'), identity('b'), identity('a')], ctx, {
      dumpAfter: ['a'],
      onDump: (p) => seen.push(p),
    });
    expect(seen).toEqual(['a', 'a']);
  });

  test('an unknown pass name in dumpAfter is rejected, listing the valid names', () => {
    const run = () =>
      runPipeline(initialState(lowered('baseline')), cleanupPasses, ctx, { dumpAfter: ['cse', 'fusion'] });
    expect(run).toThrow(PassError);
    expect(run).toThrow(/unknown pass 'fusion'.*set-algebra, canonicalize, cse, dce/);
  });

  test('verify catches a pass that deletes a needed instruction, naming it', () => {
    const start = initialState(lowered('baseline'));
    let err: unknown;
    try {
      runPipeline(start, [...cleanupPasses, breaking, identity('after')], ctx, { verify: true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PassError);
    expect((err as PassError).pass).toBe('drop-first');
    expect((err as PassError).message).toMatch(/after pass 'drop-first' the IR does not verify/);
    expect((err as PassError).message).toMatch(/stage layer\.0, instr \d+ \(rmsnorm\)/);
    // Without verify the broken state goes through unnoticed.
    expect(() => runPipeline(start, [breaking], ctx)).not.toThrow();
  });

  test('a pass that throws becomes a PassError naming it', () => {
    const bad: Pass = {
      name: 'explodes',
      description: '',
      run: () => {
        throw new Error('boom');
      },
    };
    expect(() => runPipeline(initialState(lowered('baseline')), [bad], ctx)).toThrow(
      /pass 'explodes' failed: boom/,
    );
  });

  test('the cleanup passes keep every example verifiable', () => {
    for (const name of ['baseline', 'dllm-cache', 'flashblock', 'mage', 'elastic-cache']) {
      expect(() =>
        runPipeline(initialState(lowered(name)), cleanupPasses, ctx, { verify: true }),
      ).not.toThrow();
    }
  });
});

describe('dumpState', () => {
  test('prints kernels and the memory plan once present', () => {
    const l = lowered('baseline');
    const kernels: KernelProgram = {
      name: 'baseline.cached',
      buffers: [],
      kernels: [
        {
          name: 'k0',
          kind: 'gemm',
          stage: 'layer.0',
          reads: ['x', 'w'],
          writes: ['y'],
          grid: ['#rows.0', 96],
          indirect: ['rows.0'],
          epilogue: ['bias', 'rope'],
          flops: [],
          bytes: [],
          instrs: [],
        },
      ],
    };
    const memory: MemoryPlan = {
      arena: new Map([['y', { offset: 0, bytes: 256 }]]),
      persistent: new Map([['kv.k.0', { offset: 0, bytes: 1024 }]]),
      peakBytes: 256,
      naiveBytes: 512,
      persistentBytes: 1024,
      liveRanges: new Map([['y', [0, 0]]]),
      align: 8,
      wholeBuffer: false,
      batch: 1,
    };
    const text = dumpState({
      ...initialState(l),
      kernels: new Map([['cached', kernels]]),
      memory: new Map([['cached', memory]]),
    });
    expect(text).toContain('kernels cached (baseline.cached): 1 kernels, 0 buffers');
    expect(text).toContain(
      'k0: gemm layer.0 grid [#rows.0, 96] x, w -> y indirect [rows.0] epilogue [bias, rope]',
    );
    expect(text).toContain('memory cached: peak 256 B, naive 512 B (50.0% of naive), persistent 1024 B');
    expect(text).toContain('y -> arena @0 256 B live [0, 0]');
    expect(text).toContain('kv.k.0 -> persistent @0 1024 B');
    expect(dumpState(initialState(l))).not.toContain('kernels');
  });
});
