import { describe, expect, test } from 'vitest';
import {
  defaultTask,
  fnv1a32,
  genLength,
  heldOutProblems,
  isHeldOut,
  taskNamed,
  tasks,
} from '../../src/eval/tasks.ts';
import { createRng } from '../../src/model/weights.ts';

const sampleMany = (name: string, n: number, seed = 5) => {
  const rng = createRng(seed);
  const t = taskNamed(name);
  return Array.from({ length: n }, () => t.sample(() => rng.uniform()));
};

describe('tasks', () => {
  test('the three original tasks come first, then the multi-step ones; the default is one of them', () => {
    expect([...tasks.keys()]).toEqual(['count', 'sort', 'add', 'fib', 'lcg', 'bub', 'acc', 'rem']);
    expect(tasks.has(defaultTask)).toBe(true);
    expect(() => taskNamed('cout')).toThrow(
      /unknown task 'cout' \(tasks: count, sort, add, fib, lcg, bub, acc, rem\)/,
    );
  });

  test('count answers list the numbers from a to b', () => {
    for (const p of sampleMany('count', 300)) {
      const m = /^cnt:(0|[1-9][0-9]{0,2})-([0-9]+)=$/.exec(p.prompt);
      expect(m).not.toBeNull();
      const [a, b] = [Number(m?.[1]), Number(m?.[2])];
      expect(b - a + 1).toBeGreaterThanOrEqual(4);
      expect(b - a + 1).toBeLessThanOrEqual(12);
      expect(p.answer.split(',').map(Number)).toEqual(Array.from({ length: b - a + 1 }, (_, i) => a + i));
    }
  });

  test('sort answers are the sorted digits', () => {
    for (const p of sampleMany('sort', 200)) {
      const m = /^sort:([0-9]{4,16})=$/.exec(p.prompt);
      expect(m).not.toBeNull();
      const digits = [...(m?.[1] ?? '')];
      expect(p.answer).toBe(digits.sort().join(''));
    }
  });

  test('add answers are the sums, operands without leading zeros', () => {
    for (const p of sampleMany('add', 300)) {
      const m = /^(0|[1-9][0-9]{0,5})\+(0|[1-9][0-9]{0,5})=$/.exec(p.prompt);
      expect(m).not.toBeNull();
      expect(p.answer).toBe(String(BigInt(m?.[1] ?? 'x') + BigInt(m?.[2] ?? 'x')));
    }
  });

  test('answers fit the 64-token canvas with EOS after them; prompts vary in length', () => {
    for (const name of tasks.keys()) {
      const ps = sampleMany(name, 300);
      expect(Math.max(...ps.map((p) => p.answer.length))).toBeLessThan(genLength);
      // The multi-step tasks' prompt lengths are checked in test/eval/multistep.test.ts.
      if (['count', 'sort', 'add'].includes(name))
        expect(new Set(ps.map((p) => p.prompt.length)).size).toBeGreaterThanOrEqual(4);
    }
  });

  test('the default task has long answers (at least 16 characters on average)', () => {
    const ps = sampleMany(defaultTask, 1000);
    expect(ps.reduce((a, p) => a + p.answer.length, 0) / ps.length).toBeGreaterThanOrEqual(16);
  });

  test('check is exact match', () => {
    const t = taskNamed('add');
    const p = { task: 'add', prompt: '12+345=', answer: '357' };
    expect(t.check('357', p)).toBe(true);
    expect(t.check('358', p)).toBe(false);
    expect(t.check('3570', p)).toBe(false);
    expect(t.check('', p)).toBe(false);
  });
});

describe('held-out problems', () => {
  test('FNV-1a 32 matches the published test vectors', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
  });

  test('about one prompt in ten is held out', () => {
    const ps = sampleMany('sort', 5000, 9);
    const frac = ps.filter((p) => isHeldOut(p.prompt)).length / ps.length;
    expect(frac).toBeGreaterThan(0.08);
    expect(frac).toBeLessThan(0.12);
  });

  test('are held out, distinct, deterministic, and depend on the seed', () => {
    for (const name of tasks.keys()) {
      const a = heldOutProblems(name, 100);
      expect(a).toHaveLength(100);
      expect(a.every((p) => isHeldOut(p.prompt) && p.task === name)).toBe(true);
      expect(new Set(a.map((p) => p.prompt)).size).toBe(100);
      expect(heldOutProblems(name, 100, 1)).toEqual(a);
      expect(heldOutProblems(name, 10, 2)).not.toEqual(a.slice(0, 10));
      expect(heldOutProblems(name, 30)).toEqual(a.slice(0, 30));
    }
  });

  test('a training sampler (held-out prompts rejected) never yields one of them', () => {
    const held = new Set(heldOutProblems('add', 500).map((p) => p.prompt));
    const rng = createRng(1);
    const t = taskNamed('add');
    let n = 0;
    while (n < 5000) {
      const p = t.sample(() => rng.uniform());
      if (isHeldOut(p.prompt)) continue;
      n++;
      expect(held.has(p.prompt)).toBe(false);
    }
  });

  test('rejects a bad count', () => {
    expect(() => heldOutProblems('sort', -1)).toThrow(RangeError);
    expect(heldOutProblems('sort', 0)).toEqual([]);
  });
});
