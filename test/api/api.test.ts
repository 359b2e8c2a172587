// The library API's contract beyond the worked example: each function on good input, and bad input
// coming back as data (diagnostics) or as a KvplanError with the documented code, never a crash.
import { describe, expect, test } from 'vitest';
import {
  type CheckedPlan,
  checkPlan,
  checkPlanFile,
  compilePlan,
  evaluate,
  explainPlan,
  formatDiagnostics,
  generate,
  KvplanError,
  type KvplanErrorCode,
  loadModelConfig,
  openModel,
  prepare,
  type StepEvent,
  verifyPlan,
} from '../../src/index.ts';

const dual = (
  decode = 'per_step(2) by confidence in current_block',
) => `plan dual(block: int = 4 in [2, 32]) {
  blocks block
  refresh all when block_start
  compute current_block
  cache kv of all
  attend all
  decode ${decode}
}
`;

function planOf(text: string, set?: Record<string, number>): CheckedPlan {
  const r = checkPlan({ text, ...(set ? { set } : {}) });
  if (!r.ok || !r.plans[0]) throw new Error(formatDiagnostics(r));
  return r.plans[0];
}

/** What `f` throws (or rejects with): a KvplanError with `code`, whose message matches `message`. */
async function rejects(f: () => unknown, code: KvplanErrorCode, message: RegExp): Promise<KvplanError> {
  let thrown: unknown;
  try {
    await f();
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(KvplanError);
  const e = thrown as KvplanError;
  expect({ code: e.code, name: e.name }).toEqual({ code, name: 'KvplanError' });
  expect(e.message).toMatch(message);
  return e;
}

describe('checkPlan and checkPlanFile', () => {
  test('a mistake in the plan is returned as a diagnostic with its place, and formatted as the CLI does', () => {
    const text = dual().replace('compute current_block', 'compute curent_block');
    const r = checkPlan({ text, path: 'typo.kvp' });
    expect(r.ok).toBe(false);
    expect(r.plans).toEqual([]);
    const at = text.indexOf('curent_block');
    const line = text.slice(0, at).split('\n').length;
    const col = at - text.lastIndexOf('\n', at);
    expect(r.diagnostics[0]).toMatchObject({ severity: 'error', span: { start: { line, col } } });
    const shown = formatDiagnostics(r);
    expect(shown).toContain(`typo.kvp:${line}:${col}: error: unknown name 'curent_block'`);
    expect(shown).toContain('^'.repeat('curent_block'.length));
    expect(formatDiagnostics(checkPlan({ text: dual() }))).toBe('');
  });

  test('set overrides parameters; a value out of range or a name no plan declares is an error', () => {
    expect(planOf(dual(), { block: 8 }).params.get('block')).toBe(8);
    expect(checkPlan({ text: dual(), set: new Map([['block', '16']]) }).plans[0]?.params.get('block')).toBe(
      16,
    );
    const out = checkPlan({ text: dual(), set: { block: 64 } });
    expect(out.ok).toBe(false);
    expect(out.diagnostics.map((d) => d.message).join('\n')).toMatch(/outside the range \[2, 32\]/);
    const typo = checkPlan({ text: dual(), set: { blok: 8 } });
    expect(typo.ok).toBe(false);
    expect(typo.diagnostics[0]?.message).toMatch(/no plan declares a parameter 'blok'/);
    expect(typo.diagnostics[0]?.notes).toEqual(["help: did you mean 'block'?"]);
  });

  test('config holds layer scopes against a model: a scope it lacks is a warning, not an error', () => {
    const text = dual().replace('compute current_block', 'compute current_block on layers >= 3');
    const plain = checkPlan({ text });
    expect(plain.diagnostics).toEqual([]);
    const r = checkPlan({ text, config: 'tiny' });
    expect(r.ok).toBe(true);
    expect(r.diagnostics).toMatchObject([{ severity: 'warning', message: expect.stringMatching(/'tiny'/) }]);
  });

  test('bad arguments throw KvplanError: not text, a setting of the wrong type, an unreadable file', async () => {
    await rejects(() => checkPlan({ text: 42 } as never), 'invalid-argument', /text: string/);
    await rejects(() => checkPlan(undefined as never), 'invalid-argument', /text: string/);
    await rejects(
      () => checkPlan({ text: dual(), set: { block: [] as never } }),
      'invalid-argument',
      /set\.block/,
    );
    await rejects(
      () => checkPlanFile('no/such/plan.kvp'),
      'unreadable-file',
      /no\/such\/plan\.kvp: no such file/,
    );
    await rejects(() => checkPlanFile('examples'), 'unreadable-file', /examples/);
    const r = checkPlanFile('examples/fast-dllm-dual.kvp', { set: { block: 8 } });
    expect(r.ok).toBe(true);
    expect(r.file.path).toBe('examples/fast-dllm-dual.kvp');
    expect(r.plans[0]?.plan.name).toBe('fast_dllm_dual');
  });
});

describe('model configs, explain and compile', () => {
  test('loadModelConfig: presets, objects validated, bad ones refused with the reason', async () => {
    const tiny = loadModelConfig('tiny');
    expect(loadModelConfig({ ...tiny, layers: 3 }).layers).toBe(3);
    const e = await rejects(() => loadModelConfig('tinny'), 'invalid-config', /did you mean "tiny"/);
    expect(e.cause).toBeInstanceOf(Error);
    await rejects(
      () => loadModelConfig({ ...tiny, layers: 0 }),
      'invalid-config',
      /layers.*positive integer/,
    );
    await rejects(() => loadModelConfig(42 as never), 'invalid-argument', /ModelConfig or a string/);
  });

  test('explainPlan shows the phases and, with ir, the IR; layers the model lacks are refused', async () => {
    const plan = planOf(dual());
    const short = explainPlan(plan, { config: 'small', ir: false });
    expect(short).toMatch(/^plan dual {2}\(<plan>; model small: 4 layers/);
    expect(short).toContain('phases: dual.refresh');
    expect(short).not.toContain('program dual.cached {');
    expect(explainPlan(plan)).toContain('program dual.cached {');
    const deep = planOf(dual().replace('compute current_block', 'compute current_block on layers >= 3'));
    await rejects(() => explainPlan(deep, { config: 'tiny' }), 'plan-model-mismatch', /<plan>:4:\d+: error:/);
    await rejects(() => explainPlan({} as CheckedPlan), 'invalid-argument', /checked plan/);
  });

  test('compilePlan: stats agree with the kernels of each phase; bad options refused', async () => {
    const plan = planOf(dual());
    const r = await compilePlan(plan, { config: 'tiny', target: 'cpu', promptLength: 4, genLength: 8 });
    expect(r.stats).toMatchObject({ plan: 'dual', config: 'tiny', target: 'cpu', canvas: 12 });
    expect([...r.phases.keys()]).toEqual(Object.keys(r.stats.phases));
    for (const [phase, kernels] of r.phases) expect(kernels.length).toBe(r.stats.phases[phase]);
    expect(r.stats.kernels).toBe([...r.phases.values()].reduce((a, k) => a + k.length, 0));
    expect(r.files).toEqual([]);
    await rejects(
      () => compilePlan(plan, { target: 'gpu' as never }),
      'invalid-argument',
      /target must be one of/,
    );
    await rejects(() => compilePlan(plan, { outDir: '/tmp/x' }), 'invalid-argument', /reference target/);
    await rejects(() => compilePlan(plan, { target: 'cpu', arch: 'sm_90' }), 'invalid-argument', /ptx only/);
  });
});

describe('models, prepare and generate', () => {
  test('openModel: random presets; bad sources refused with their code', async () => {
    const m = await openModel({ preset: 'tiny', seed: 3 });
    expect(m.name).toBe('tiny');
    expect(m.path).toBeUndefined();
    expect(m.tokenizer.decode(m.tokenizer.encode('abc'))).toBe('abc');
    await rejects(() => openModel('no/such/model.onnx'), 'unreadable-file', /no\/such\/model\.onnx/);
    await rejects(() => openModel({ bundled: 'nope' as never }), 'invalid-argument', /step-dllm/);
    await rejects(() => openModel({ preset: 'tiny', seed: -1 }), 'invalid-argument', /seed/);
    await rejects(() => openModel({ preset: 'llada-8b' }), 'invalid-config', /llada-8b/);
  });

  test('prepare refuses a plan the model cannot run and unknown backends', async () => {
    const model = await openModel({ preset: 'tiny' });
    const shifted = planOf(dual('threshold(0.9) by confidence in current_block ar_shift'));
    await rejects(() => prepare(shifted, model), 'plan-model-mismatch', /AR shift/);
    await rejects(
      () => prepare(planOf(dual()), model, { backend: 'tpu' as never }),
      'invalid-argument',
      /backend/,
    );
    await rejects(() => prepare(planOf(dual()), {} as never), 'invalid-argument', /Model/);
  });

  test("generate: a step's logits read during onStep stay the caller's; first read after it, they throw", async () => {
    // The CPU runner hands out its arena's logits, which the next step overwrites.
    const model = await openModel({ preset: 'tiny' });
    const prepared = await prepare(planOf(dual()), model, { backend: 'cpu', maxCanvas: 16 });
    const kept: { event: StepEvent; copy: Float64Array }[] = [];
    const unread: StepEvent[] = [];
    await generate(prepared, {
      prompt: [1, 2, 3],
      genLength: 8,
      onStep: (e) => {
        if (e.step % 2 === 1) unread.push(e);
        else kept.push({ event: e, copy: e.logits.data.slice() });
      },
    });
    expect(kept.length).toBeGreaterThan(1);
    expect(unread.length).toBeGreaterThan(0);
    for (const { event, copy } of kept) {
      expect(event.logits.data.length).toBe(event.computed.length * model.config.vocab);
      expect(event.logits.data).toEqual(copy);
    }
    // Steps differ, so an array shared between them would not have matched every copy above.
    expect(kept[0]?.copy).not.toEqual(kept[1]?.copy.subarray(0, kept[0]?.copy.length));
    for (const e of unread)
      await rejects(() => e.logits.data, 'invalid-argument', new RegExp(`step ${e.step} .*after its onStep`));
  });

  test('generate: with stepLogits false the events carry no logits, on every backend alike, and decide the same', async () => {
    const model = await openModel({ preset: 'tiny' });
    const prepared = await prepare(planOf(dual()), model, { backend: 'cpu', maxCanvas: 16 });
    const run = (stepLogits?: boolean) => {
      const events: StepEvent[] = [];
      const reads: unknown[] = [];
      const result = generate(prepared, {
        prompt: [1, 2, 3],
        genLength: 8,
        ...(stepLogits === undefined ? {} : { stepLogits }),
        onStep: (e) => {
          events.push(e);
          try {
            reads.push(e.logits.data.length);
          } catch (err) {
            reads.push(err);
          }
        },
      });
      return result.then((r) => ({ r, events, reads }));
    };
    const asked = await run();
    const skipped = await run(false);
    expect(skipped.r.sequences[0]?.tokens).toEqual(asked.r.sequences[0]?.tokens);
    expect(skipped.events.map((e) => e.logits.shape)).toEqual(asked.events.map((e) => e.logits.shape));
    expect(asked.reads.every((n) => typeof n === 'number' && n > 0)).toBe(true);
    expect(skipped.reads.length).toBeGreaterThan(1);
    for (const err of skipped.reads) {
      expect(err).toBeInstanceOf(KvplanError);
      expect((err as KvplanError).code).toBe('invalid-argument');
      expect((err as KvplanError).message).toMatch(/stepLogits: false/);
    }
  });

  test('generate: a batch of two, every step reported for each; bad prompts refused', async () => {
    const model = await openModel({ preset: 'tiny' });
    const prepared = await prepare(planOf(dual()), model, { maxCanvas: 24 });
    const events: StepEvent[] = [];
    const r = await generate(prepared, {
      prompts: ['ab', [1, 2, 3]],
      genLength: 8,
      onStep: (e) => events.push(e),
    });
    expect(r.sequences.map((s) => [s.prompt.length, s.tokens.length])).toEqual([
      [2, 8],
      [3, 8],
    ]);
    for (const [i, s] of r.sequences.entries()) {
      const mine = events.filter((e) => e.sequence === i);
      expect(mine.length).toBe(s.steps);
      const positions = mine.flatMap((e) => e.committed.map((c) => c.position)).sort((a, b) => a - b);
      expect(positions).toEqual(Array.from({ length: 8 }, (_, j) => s.prompt.length + j));
      expect(s.text).toBe(model.tokenizer.decode(s.tokens));
    }
    await rejects(() => generate(prepared, { genLength: 8 }), 'invalid-argument', /one prompt/);
    await rejects(
      () => generate(prepared, { prompt: 'a', prompts: ['b'] }),
      'invalid-argument',
      /one prompt/,
    );
    await rejects(() => generate(prepared, { prompt: [1, 99] }), 'tokenizer', /99 at index 1/);
    await rejects(() => generate(prepared, { prompt: 'a~' }), 'tokenizer', /"~"/);
    await rejects(() => generate(prepared, { prompt: 'a', chat: true }), 'tokenizer', /chat template/);
    await rejects(
      () => generate(prepared, { prompts: ['abc', 'abc', 'abc'], genLength: 8 }),
      'invalid-argument',
      /33 canvas rows.*at most 24/,
    );
    await rejects(() => generate({} as never, { prompt: 'a' }), 'invalid-argument', /prepare/);
  });
});

describe('verifyPlan and evaluate', () => {
  test('bad options are refused before any work', async () => {
    const plan = planOf(dual());
    await rejects(() => verifyPlan(plan, { backend: 'x' as never }), 'invalid-argument', /backend/);
    await rejects(() => verifyPlan(plan, { cases: 0 }), 'invalid-argument', /cases/);
    await rejects(() => verifyPlan(plan, { configs: [] }), 'invalid-argument', /configs/);
    const deep = planOf(dual().replace('compute current_block', 'compute current_block on layers >= 3'));
    await rejects(() => verifyPlan(deep, { configs: ['tiny'] }), 'plan-model-mismatch', /tiny/);
    const model = await openModel({ preset: 'tiny' });
    await rejects(() => evaluate(plan, model, { task: 'nope' as never }), 'invalid-argument', /task must be/);
    await rejects(() => evaluate(plan, model, { task: 'count', n: 10_000 }), 'invalid-argument', /n must be/);
  });

  test('evaluate scores held-out problems of a task with the plan', async () => {
    const model = await openModel({ bundled: 'step-dllm' });
    const r = await evaluate(planOf(dual()), model, { task: 'acc', n: 2, genLength: 8, batchSize: 2 });
    expect(r).toMatchObject({ plan: 'dual', task: 'acc', n: 2 });
    expect(r.problems.map((p) => p.problem.prompt)).toEqual([
      expect.stringMatching(/^acc:\d+=$/),
      expect.stringMatching(/^acc:\d+=$/),
    ]);
    // Eight positions cannot hold a 48-character answer: every problem is wrong, whatever the model.
    expect(r.problems.map((p) => p.correct)).toEqual([false, false]);
    expect(r.accuracy).toBe(0);
    // per_step(2) over blocks of 4: at most two steps per block, two blocks; a sequence stops
    // early once it has committed an EOS and everything before it.
    for (const p of r.problems) {
      expect(p.steps).toBeGreaterThanOrEqual(1);
      expect(p.steps).toBeLessThanOrEqual(4);
    }
    expect(r.meanSteps).toBe((r.problems[0]?.steps ?? 0) / 2 + (r.problems[1]?.steps ?? 0) / 2);
  });
});
