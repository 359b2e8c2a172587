/**
 * The tasks with multi-step dynamics (issue 17): fib, lcg, bub, acc, rem. Their answers are 48-62
 * characters of fixed-width terms, each following from the terms before it; the checks here recompute every
 * answer independently of src/eval/tasks.ts, pin the draws, and check the Python mirror
 * (examples/train/tasks.py) through a fixture it wrote (test/eval/multistep-python.json; the
 * snippet under "The Python mirror's fixture" in examples/train/README.md rewrites it).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import {
  bubblePass,
  bubPasses,
  fibTerms,
  fnv1a32,
  genLength,
  heldOutProblems,
  isHeldOut,
  lcgTerms,
  multiStepTasks,
  type Problem,
  remDivisor,
  runningDigits,
  taskNamed,
  tasks,
} from '../../src/eval/tasks.ts';
import { createRng } from '../../src/model/weights.ts';

const sampleMany = (name: string, n: number, seed = 5): Problem[] => {
  const rng = createRng(seed);
  const t = taskNamed(name);
  return Array.from({ length: n }, () => t.sample(() => rng.uniform()));
};

/** The bundled model's characters: the new tasks need no other. */
const bundledChars = '$0123456789abcdefghijklmnopqrstuvwxyz+:=,-';

interface PythonFixture {
  held_out: Record<string, Problem[]>;
  training: Problem[];
  hashes: { prompt: string; fnv1a32: number }[];
}
const python = JSON.parse(readFileSync('test/eval/multistep-python.json', 'utf8')) as PythonFixture;

describe('multi-step tasks', () => {
  test('are fib, lcg, bub, acc and rem, after the original three', () => {
    expect(multiStepTasks).toEqual(['fib', 'lcg', 'bub', 'acc', 'rem']);
    expect([...tasks.keys()].slice(3)).toEqual(multiStepTasks);
  });

  test('fib: 14 three-digit terms, each the sum of the two before it mod 1000', () => {
    for (const p of sampleMany('fib', 300)) {
      const m = /^fib:(0|[1-9][0-9]{0,2}),(0|[1-9][0-9]{0,2})=$/.exec(p.prompt);
      expect(m).not.toBeNull();
      const terms = p.answer.split(',');
      expect(terms).toHaveLength(fibTerms);
      expect(terms.every((t) => /^[0-9]{3}$/.test(t))).toBe(true);
      const x = terms.map(Number);
      expect([x[0], x[1]]).toEqual([Number(m?.[1]), Number(m?.[2])]);
      for (let i = 2; i < x.length; i++)
        expect(x[i]).toBe(((x[i - 1] as number) + (x[i - 2] as number)) % 1000);
    }
    expect(taskNamed('fib').sample(() => 0).answer).toBe(Array(14).fill('000').join(','));
  });

  test('lcg: 17 two-digit terms of x -> (a x + b) mod 100', () => {
    const as = new Set<number>();
    for (const p of sampleMany('lcg', 300)) {
      const m = /^lcg:([2-9]),([1-9]),(0|[1-9][0-9]?)=$/.exec(p.prompt);
      expect(m).not.toBeNull();
      const [a, b, x0] = [Number(m?.[1]), Number(m?.[2]), Number(m?.[3])];
      as.add(a);
      const terms = p.answer.split(',');
      expect(terms).toHaveLength(lcgTerms);
      expect(terms.every((t) => /^[0-9]{2}$/.test(t))).toBe(true);
      let x = x0;
      for (const t of terms) {
        expect(Number(t)).toBe(x);
        x = (a * x + b) % 100;
      }
    }
    expect(as.size).toBe(8);
  });

  test('bub: 7 bubble-sort passes of 6-8 digits, the last one sorted', () => {
    const pass = (s: string): string => {
      // An independent bubble pass: carry the larger digit to the right.
      let out = '';
      let carry = s[0] as string;
      for (const c of s.slice(1)) {
        if (c < carry) out += c;
        else {
          out += carry;
          carry = c;
        }
      }
      return out + carry;
    };
    const widths = new Set<number>();
    for (const p of sampleMany('bub', 300)) {
      const m = /^bub:([0-9]{6,8})=$/.exec(p.prompt);
      expect(m).not.toBeNull();
      let row = m?.[1] ?? '';
      widths.add(row.length);
      const rows = p.answer.split(',');
      expect(rows).toHaveLength(bubPasses);
      for (const r of rows) {
        expect(bubblePass(row)).toBe(pass(row));
        row = pass(row);
        expect(r).toBe(row);
      }
      expect(rows.at(-1)).toBe([...(m?.[1] ?? '')].sort().join(''));
    }
    expect([...widths].sort()).toEqual([6, 7, 8]);
    expect(bubblePass('31524786')).toBe('13245768');
  });

  test('acc and rem: 48 input digits, the running sum mod 10 and the running remainder mod 7 after each', () => {
    const zeros = { acc: 0, rem: 0 };
    for (const name of ['acc', 'rem'] as const) {
      for (const p of sampleMany(name, 300)) {
        const m = new RegExp(`^${name}:([0-9]{${runningDigits}})=$`).exec(p.prompt);
        expect(m).not.toBeNull();
        const input = m?.[1] ?? '';
        zeros[name] += [...input].filter((c) => c === '0').length;
        expect(p.answer).toHaveLength(runningDigits);
        // Independently: the sum of the prefix mod 10, and the prefix read as a decimal number mod 7.
        for (let i = 0; i < runningDigits; i++) {
          const prefix = input.slice(0, i + 1);
          const want =
            name === 'acc'
              ? [...prefix].reduce((a, c) => a + Number(c), 0) % 10
              : Number(BigInt(prefix) % BigInt(remDivisor));
          expect(p.answer[i]).toBe(String(want));
        }
      }
    }
    // A 0 is drawn with probability 5/14, every other digit 1/14.
    for (const z of Object.values(zeros))
      expect(Math.abs(z / (300 * runningDigits) - 5 / 14)).toBeLessThan(0.02);
    expect(remDivisor).toBe(7);
  });

  test('answers are 48-62 characters of the bundled alphabet; prompts vary in length', () => {
    for (const name of multiStepTasks) {
      const ps = sampleMany(name, 500);
      for (const p of ps) {
        expect(p.answer.length).toBeGreaterThanOrEqual(48);
        expect(p.answer.length).toBeLessThan(genLength);
        expect([...p.prompt, ...p.answer].every((c) => bundledChars.includes(c) && c !== '$')).toBe(true);
        expect(taskNamed(name).check(p.answer, p)).toBe(true);
        expect(taskNamed(name).check(p.answer.slice(0, -1), p)).toBe(false);
      }
      // Prompts of the chains vary in length; the running tasks' are 48 digits always.
      const lengths = new Set(ps.map((p) => p.prompt.length)).size;
      if (name === 'acc' || name === 'rem') expect(lengths).toBe(1);
      else expect(lengths).toBeGreaterThanOrEqual(2);
    }
  });

  test('the draws are pinned (the Python mirror and any trained model depend on them)', () => {
    expect(heldOutProblems('fib', 2)).toEqual([
      {
        task: 'fib',
        prompt: 'fib:7,978=',
        answer: '007,978,985,963,948,911,859,770,629,399,028,427,455,882',
      },
      { task: 'fib', prompt: 'fib:54,8=', answer: '054,008,062,070,132,202,334,536,870,406,276,682,958,640' },
    ]);
    expect(heldOutProblems('lcg', 2)).toEqual([
      { task: 'lcg', prompt: 'lcg:8,3,54=', answer: '54,35,83,67,39,15,23,87,99,95,63,07,59,75,03,27,19' },
      { task: 'lcg', prompt: 'lcg:3,3,0=', answer: '00,03,12,39,20,63,92,79,40,23,72,19,60,83,52,59,80' },
    ]);
    expect(heldOutProblems('bub', 2)).toEqual([
      {
        task: 'bub',
        prompt: 'bub:96664101=',
        answer: '66641019,66410169,64101669,41016669,10146669,01146669,01146669',
      },
      { task: 'bub', prompt: 'bub:857520=', answer: '575208,552078,520578,205578,025578,025578,025578' },
    ]);
    expect(heldOutProblems('acc', 1)).toEqual([
      {
        task: 'acc',
        prompt: 'acc:527000382809994073034064002575000293305685190000=',
        answer: '574444757554326636693393335072222436994083433333',
      },
    ]);
    expect(heldOutProblems('rem', 1)).toEqual([
      {
        task: 'rem',
        prompt: 'rem:094700017750800700030242864372000548809759600508=',
        answer: '023264526432000000032102061640000552002621264320',
      },
    ]);
  });

  test('held-out problems: enough distinct ones for a 200-problem evaluation, deterministic', () => {
    for (const name of multiStepTasks) {
      const a = heldOutProblems(name, 300);
      expect(new Set(a.map((p) => p.prompt)).size).toBe(300);
      expect(a.every((p) => isHeldOut(p.prompt))).toBe(true);
      expect(heldOutProblems(name, 300)).toEqual(a);
    }
  });

  test('the Python mirror (examples/train/tasks.py) draws the same problems and trains on no held-out one', () => {
    for (const name of multiStepTasks) expect(python.held_out[name]).toEqual(heldOutProblems(name, 20));
    const held = new Set(multiStepTasks.flatMap((name) => heldOutProblems(name, 500).map((p) => p.prompt)));
    expect(python.training).toHaveLength(30);
    for (const p of python.training) {
      expect(isHeldOut(p.prompt)).toBe(false);
      expect(held.has(p.prompt)).toBe(false);
      expect(taskNamed(p.task).check(p.answer, p)).toBe(true);
    }
    for (const h of python.hashes) expect(fnv1a32(h.prompt)).toBe(h.fnv1a32);
  });
});
