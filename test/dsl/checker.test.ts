import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';

const check = (body: string, params = '', overrides?: Map<string, string>) =>
  checkSource({ path: 't.kvp', text: `plan t(${params}) {\n${body}\n}\n` }, overrides ? { overrides } : {});
const messages = (r: ReturnType<typeof check>) =>
  r.diagnostics.map((d) => `${d.span.start.line}:${d.span.start.col} ${d.message}`);

const decode = '  decode threshold(0.9)';

describe('names and types', () => {
  test('unknown names suggest the closest builtin', () => {
    const r = check(`  compute curent_block\n${decode}`);
    expect(messages(r)).toEqual(["2:11 unknown name 'curent_block'"]);
    expect(r.diagnostics[0]?.notes).toEqual(['help: did you mean `current_block`?']);
  });
  test('a score where a set is expected', () => {
    expect(messages(check(`  compute confidence\n${decode}`))).toEqual([
      '2:11 the compute set must be a token set, but `confidence` is a per-token score',
    ]);
  });
  test('set operators reject numbers, and comparisons make predicates', () => {
    expect(messages(check(`  compute masked | 3\n${decode}`))[0]).toMatch(/'\|' needs two token sets/);
    expect(messages(check(`  let old = decoded[age >= 2 and position > 3] | masked\n${decode}`))).toEqual([]);
    expect(messages(check(`  compute decoded[step]\n${decode}`))[0]).toMatch(
      /a filter must be a per-token predicate or a step condition, but `step` is an integer/,
    );
  });
  test('arity and argument ranges of builtins and decode rules', () => {
    expect(messages(check(`  compute topk(masked, confidence)\n${decode}`))[0]).toBe(
      "2:11 'topk' takes 3 arguments, but 2 were given",
    );
    expect(messages(check('  decode threshold(1.5)'))).toEqual([
      "2:20 argument 'tau' of threshold is 1.5, but must be > 0 and <= 1",
    ]);
    expect(messages(check(`  compute keep(masked, confidence, r)\n${decode}`, 'r = 0.0'))[0]).toMatch(
      /argument 'ratio' of keep is 0, but must be > 0 and <= 1/,
    );
    expect(messages(check(`  compute masked\n  refresh all when every(2.5)\n${decode}`))[0]).toMatch(
      /argument 'n' of every must be an integer/,
    );
  });
  test('parameters: ranges, duplicates, shadowing, overrides', () => {
    expect(messages(check(decode, 'tau = 1.5 in [0, 1]'))).toEqual([
      "1:14 default 1.5 of 'tau' is outside its range [0, 1]",
    ]);
    expect(messages(check(decode, 'a = 1, a = 2'))[0]).toMatch(/'a' is already defined/);
    expect(messages(check(decode, 'masked = 1'))[0]).toMatch(/shadows the builtin/);
    const ok = check('  decode threshold(tau)', 'tau = 0.9 in [0.5, 1.0]', new Map([['tau', '0.7']]));
    expect(ok.plans[0]?.params.get('tau')).toBe(0.7);
    const bad = check('  decode threshold(tau)', 'tau = 0.9 in [0.5, 1.0]', new Map([['tau', '0.2']]));
    expect(messages(bad)[0]).toMatch(/--set tau=0.2 is outside the range \[0.5, 1.0\]/);
    const notInt = check('  blocks b\n  decode threshold(0.9)', 'b = 4', new Map([['b', '2.5']]));
    expect(messages(notInt)[0]).toMatch(/'2.5' is not an integer/);
  });
  test('a let whose expression fails is still defined: its uses report nothing more', () => {
    const r = check(`  let w = curent_block | newly_decoded\n  compute w\n  cache kv of w\n${decode} in w`);
    expect(messages(r)).toEqual(["2:11 unknown name 'curent_block'"]);
    const typeError = check(`  let s = confidence | masked\n  compute masked[s > 0.5]\n${decode}`);
    expect(messages(typeError)).toEqual([
      "2:11 '|' needs two token sets, but got a per-token score (`confidence`) and a token set (`masked`)",
    ]);
    // Still defined, so a second definition of the name is a duplicate, not a fresh start.
    expect(messages(check(`  let w = curent_block\n  let w = masked\n${decode}`))[1]).toBe(
      "3:7 'w' is already defined at line 2",
    );
  });
  test('a parameter with a default of the wrong type is reported once, not at each use', () => {
    expect(messages(check('  blocks b\n  decode threshold(0.9)', 'b: int = 2.5'))).toEqual([
      "1:17 default of 'b' is a number, but the parameter is declared int",
    ]);
  });
  test('a default outside its own range is reported at the default only', () => {
    expect(messages(check('  decode threshold(tau)', 'tau: float = 1.5 in [0.5, 1.0]'))).toEqual([
      "1:21 default 1.5 of 'tau' is outside its range [0.5, 1.0]",
    ]);
    expect(messages(check('  blocks b\n  decode threshold(0.9)', 'b: int = 0 in [1, 8]'))).toEqual([
      "1:17 default 0 of 'b' is outside its range [1, 8]",
    ]);
    // An override inside the parameter's range is checked against the builtin's range as usual.
    const overridden = check(
      '  decode threshold(tau)',
      'tau: float = 1.5 in [0.5, 2.0]',
      new Map([['tau', '1.2']]),
    );
    expect(messages(overridden)).toEqual([
      "2:20 argument 'tau' of threshold is 1.2, but must be > 0 and <= 1",
    ]);
  });
  test('score arithmetic, negation and comparison type as documented', () => {
    const ok = [
      `  cache kv of topk(masked, confidence - 0.01 * position, 2)\n${decode}`,
      `  cache kv of keep(masked, -entropy, 0.5)\n${decode}`,
      `  cache kv of masked[margin < confidence]\n${decode}`,
      `  refresh all when block_start == every(4)\n${decode}`,
      '  decode threshold(0.5) by confidence - 0.01 * position',
      '  decode per_step(1) by confidence / (1 + age)',
    ];
    for (const body of ok) expect(messages(check(body)), body).toEqual([]);
    expect(messages(check(`  compute masked[confidence - masked > 0]\n${decode}`))[0]).toMatch(
      /'-' needs two token sets, two numbers, or a per-token score and a score or number/,
    );
    expect(messages(check(`  compute -masked\n${decode}`))[0]).toMatch(
      /'-' needs a number or a per-token score, but `masked` is a token set/,
    );
    expect(messages(check(`  refresh all when block_start < every(4)\n${decode}`))[0]).toMatch(
      /'<' needs two numbers, or a per-token score/,
    );
  });
  test('names must be defined before use', () => {
    expect(messages(check(`  compute x\n  let x = masked\n${decode}`))[0]).toMatch(
      /'x' is used before its definition at line 3/,
    );
  });
});

describe('rule structure', () => {
  test('a plan needs a decode rule', () => {
    expect(messages(check('  compute all'))).toEqual(["1:6 plan 't' has no decode rule"]);
  });
  test('overlapping compute scopes contradict; a scoped rule overrides the unscoped one', () => {
    expect(
      messages(check(`  compute all on layers >= 1\n  compute masked on layers 2..3\n${decode}`))[0],
    ).toMatch(/contradictory rules: this `compute` rule and the one at line 2 both apply to layer 2/);
    const ok = check(
      `  refresh all when every(2)\n  cache kv of all\n  compute all on layer 0\n  compute all on layers >= 1\n${decode}`,
    );
    expect(messages(ok)).toEqual([]);
  });
  test('measured_at pins a score to a constant layer, read from that layer on', () => {
    const refresh = '  blocks 4\n  refresh all when block_start\n  cache kv of all\n';
    const ok = check(
      `${refresh}  compute keep(current_block, measured_at(confidence, 1), 0.5) | newly_decoded on layers >= 1\n${decode}`,
    );
    expect(messages(ok)).toEqual([]);
    expect(
      messages(
        check(
          `${refresh}  compute keep(current_block, measured_at(confidence, block_step), 0.5) | newly_decoded on layers >= 1\n${decode}`,
        ),
      ),
    ).toEqual([
      '5:55 the layer of measured_at must be a constant (parameters and numbers), not `block_step`',
    ]);
    expect(
      messages(
        check(
          `${refresh}  compute keep(current_block, measured_at(confidence, 2), 0.5) | newly_decoded on layers >= 1\n${decode}`,
        ),
      ),
    ).toContainEqual(
      expect.stringMatching(
        /^5:31 measured_at\(confidence, 2\) is measured when layer 2 is decided, but it is read at step \d+ .*layer 1, before that$/,
      ),
    );
    // Pinned to layer 0, the hidden-state drift has no layer below, wherever it is read.
    expect(
      messages(
        check(
          `${refresh}  compute keep(current_block, measured_at(hidden_drift, 0), 0.5) | newly_decoded on layers >= 1\n  cache hidden of all\n${decode}`,
        ),
      )[0],
    ).toMatch(/hidden_drift compares the hidden state entering a layer .* layer 0, which has no layer below/);
  });
  test('a per-KV-head selection is read only by attend key sets and other per-head selections', () => {
    const select =
      '  refresh all when block_start\n  select u = topk(prompt, confidence, 2) at block_start per kv_head\n';
    expect(messages(check(`${select}  attend u | masked\n${decode}`))).toEqual([]);
    expect(
      messages(check(`${select}  select w = u | masked at block_start per kv_head\n  attend w\n${decode}`)),
    ).toEqual([]);
    const note =
      'note: a per-KV-head selection is one key set per head: only an attend key set (without split) or another `per kv_head` selection reads it';
    const compute = check(`${select}  compute masked | u\n${decode}`);
    expect(messages(compute)).toEqual([
      "4:20 'u' is chosen per KV head, so a compute statement cannot read it",
    ]);
    expect(compute.diagnostics[0]?.notes).toEqual([note]);
    // Through a let, and from a selection shared by every head.
    expect(messages(check(`${select}  let near = u | masked\n  cache kv of near\n${decode}`))).toEqual([
      "5:15 'near' reads 'u', which is chosen per KV head, so a cache statement cannot read it",
    ]);
    expect(messages(check(`${select}  select w = u at block_start\n  attend w\n${decode}`))).toEqual([
      "4:14 'u' is chosen per KV head, so selection 'w', which is one set for every head, cannot read it",
    ]);
    expect(
      messages(
        check(`${select}  attend split {\n    near = u,\n    far = all - u\n  } merge lse\n${decode}`),
      )[0],
    ).toMatch(/so a split segment cannot read it/);
    const unknown = check(`  select u = topk(prompt, confidence, 2) at block_start per kv_heads\n${decode}`);
    expect(messages(unknown)).toEqual(["2:61 unknown selection scope 'kv_heads'"]);
    expect(unknown.diagnostics[0]?.notes?.[0]).toBe('help: did you mean `kv_head`?');
  });
  test('targets need a decode order fixed in advance', () => {
    expect(messages(check(`  compute targets | newly_decoded\n${decode}`))[0]).toMatch(
      /'targets' is only known/,
    );
  });
});

describe('reads are covered by computation or a valid cache entry', () => {
  test('nothing is cached before the first step', () => {
    const r = check(`  compute masked\n  cache kv of all\n${decode}`);
    expect(messages(r)[0]).toMatch(/neither computed in this step nor ever cached/);
    expect(r.diagnostics[0]?.notes?.at(-1)).toMatch(/^help: .*refresh all when block_start/);
  });
  test('a cache entry written before the row was decoded is not valid', () => {
    const r = check(`  refresh all when every(8)\n  compute masked\n  cache kv of all\n${decode}`);
    expect(messages(r)[0]).toMatch(/nor cached since their token last changed/);
    expect(
      messages(
        check(`  refresh all when every(8)\n  compute masked | newly_decoded\n  cache kv of all\n${decode}`),
      ),
    ).toEqual([]);
  });
  test('keys that no rule caches', () => {
    const r = check(
      `  blocks 4\n  refresh all when block_start\n  compute current_block\n  cache kv of prompt\n${decode}`,
    );
    expect(messages(r)[0]).toMatch(
      /^4:3 keys at positions 10..21 \(masked rows after the current block\) are read at step 1 .*nor ever cached/,
    );
  });
  test('a row computed deeper than its input needs a hidden cache', () => {
    const body =
      '  refresh all when block_start\n  blocks 4\n  compute current_block\n  compute all on layers >= 2\n  cache kv of all';
    expect(messages(check(`${body}\n${decode}`))[0]).toMatch(
      /their input \(the output of layer 1\) is neither computed nor cached/,
    );
    expect(messages(check(`${body}\n  cache hidden of all\n${decode}`))).toEqual([]);
  });
  test('selections are read only after they are chosen', () => {
    const body =
      '  blocks 8\n  cache kv of all\n  compute current_block\n  select s = keep(prompt | after_block, query_key(current_block), 0.5) at block_step == 1\n  attend current_block | s';
    expect(messages(check(`${body}\n  refresh all when block_start\n${decode}`))[0]).toMatch(
      /selection 's' is read at step 1/,
    );
    expect(messages(check(`${body}\n  refresh all when block_step < 2\n${decode}`))).toEqual([]);
  });
  test('attention-based selections need their queries computed when chosen', () => {
    const body = '  blocks 8\n  cache kv of all\n  refresh all when block_step < 2\n  compute current_block';
    const select = '  select s = keep(prompt, attention_mass(after_block), 0.5) at block_step == 3';
    const r = check(`${body}\n${select}\n${decode}`);
    expect(messages(r)[0]).toMatch(/attention_mass needs the attention of its queries/);
  });
  test('value_drift needs cached values', () => {
    const r = check(`  compute all\n  attend prompt | keep(generated, value_drift, 0.5)\n${decode}`);
    expect(messages(r)[0]).toMatch(/value_drift compares fresh V with cached V/);
  });
  test('a decode rule that can never commit is reported', () => {
    const r = check('  decode threshold(0.9) in prompt');
    expect(messages(r)[0]).toMatch(/commits nothing/);
  });
});

describe('exactness classification', () => {
  const classify = (body: string) => {
    const r = check(body);
    expect(messages(r)).toEqual([]);
    return r.plans[0]?.classification;
  };
  test('full recomputation is exact', () => {
    expect(classify(decode)).toEqual({ exact: true });
  });
  test('a split with no reuse is exact', () => {
    expect(classify(`  attend split { a = prompt, b = generated } merge lse\n${decode}`)).toEqual({
      exact: true,
    });
  });
  test('a block-causal prefix cache refreshed at block start is exact', () => {
    const body =
      '  blocks 4\n  refresh all when block_start\n  compute current_block\n  cache kv of prompt | before_block\n  attend all mask block_causal';
    expect(classify(`${body}\n${decode}`)).toEqual({ exact: true });
  });
  test('the same cache under bidirectional attention is approximate, with its premise', () => {
    const body =
      '  blocks 4\n  refresh all when block_start\n  compute current_block | after_block\n  cache kv of prompt | before_block';
    expect(classify(`${body}\n${decode}`)).toEqual({
      exact: false,
      premise: 'cached K/V of prompt rows and decoded rows before the current block equal their fresh values',
    });
  });
  test('sparse keys are approximate even when the sample canvas keeps every key', () => {
    const c = classify(`  attend topk(all, confidence, 100000)\n${decode}`);
    expect(c).toEqual({
      exact: false,
      premise: 'keys outside `topk(all, confidence, 100000)` receive no attention weight',
    });
  });
});

describe('blocks counted from position 0 (SDAR, Fast-dLLM v2)', () => {
  // FlashBlock as first written: on an unaligned canvas the prompt never meets the current block,
  // but where blocks count from position 0 the prompt's tail is in block 0, in both segments.
  const flashblock = (external: string) =>
    check(
      [
        '  blocks 4',
        '  refresh all when block_start',
        '  compute current_block',
        '  cache kv of prompt | before_block',
        '  attend split {',
        `    external = ${external} reused until dirty(current_block) >= 2 or block_start,`,
        '    internal = current_block',
        '  } merge lse mask block_causal',
        '  decode threshold(0.9) by confidence in current_block',
      ].join('\n'),
    );

  test('segments that overlap only on an aligned canvas are refused, naming the prompt rows', () => {
    const r = flashblock('prompt | before_block');
    expect(r.plans).toEqual([]);
    expect(messages(r)).toEqual([
      "8:5 segments 'external' and 'internal' both hold keys at positions 4..5 (prompt rows) at step 1 (block 0, block step 1), layer 0; the log-sum-exp merge would count them twice",
    ]);
  });

  test('the prompt rows of the current block kept out of the prefix segment pass', () => {
    const r = flashblock('(prompt | before_block) - current_block');
    expect(r.diagnostics).toEqual([]);
    expect(r.plans).toHaveLength(1);
  });
});

test('a block length beyond any model is refused by the checker, before the simulation sizes a canvas by it', () => {
  const r = check(`  blocks b\n  compute all\n${decode}`, 'b: int = 100000000000000000000000000000000');
  expect(messages(r)).toEqual(['2:10 the block length is 1e+32, but must be >= 1 and <= 65536']);
  expect(messages(check(`  blocks b\n  compute all\n${decode}`, 'b: int = 65537'))).toEqual([
    '2:10 the block length is 65537, but must be >= 1 and <= 65536',
  ]);
});
