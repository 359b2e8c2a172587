/**
 * The synthetic tasks of the bundled model (models/tiny-dllm): problems with checkable answers,
 * generated from a seeded random source. This file is the source of truth; the training script's
 * generator (examples/train/tasks.py) mirrors it draw for draw, and training never sees a prompt
 * for which `isHeldOut` is true, so `heldOutProblems` are never training problems.
 */
import { createRng } from '../model/weights.ts';

export interface Problem {
  readonly task: string;
  readonly prompt: string;
  readonly answer: string;
}

export interface Task {
  readonly name: string;
  readonly description: string;
  /**
   * How many distinct held-out prompts the task has, where that is fewer than `--n` may ask for
   * (counted by enumerating every prompt `sample` can draw; test/cli/work-estimates.test.ts).
   * Absent: more than a million.
   */
  readonly heldOut?: number;
  /** One random problem from a seeded rng (uniform in [0, 1)). */
  sample(rng: () => number): Problem;
  /** Whether a generated answer (text up to the first EOS, EOS excluded) is correct. */
  check(output: string, p: Problem): boolean;
}

/** Tokens the model generates after a prompt: the answer, then EOS up to the end of the canvas. */
export const genLength = 64;

/** A uniform integer in [lo, hi]. */
const int = (rng: () => number, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));

/** A decimal number with exactly `digits` digits (no leading zero unless it is 0..9). */
function number(rng: () => number, digits: number): string {
  let s = String(int(rng, digits > 1 ? 1 : 0, 9));
  for (let i = 1; i < digits; i++) s += String(int(rng, 0, 9));
  return s;
}

const exact = (output: string, p: Problem): boolean => output === p.answer;

const count: Task = {
  name: 'count',
  heldOut: 909,
  description: 'count from a (0-999) to b, 4-12 numbers: cnt:8-11= -> 8,9,10,11',
  sample(rng) {
    const a = Number(number(rng, int(rng, 1, 3)));
    const k = int(rng, 4, 12);
    const terms = Array.from({ length: k }, (_, i) => a + i);
    return { task: 'count', prompt: `cnt:${a}-${a + k - 1}=`, answer: terms.join(',') };
  },
  check: exact,
};

const sort: Task = {
  name: 'sort',
  description: 'sort a string of 4-16 digits: sort:3917= -> 1379',
  sample(rng) {
    const n = int(rng, 4, 16);
    let s = '';
    for (let i = 0; i < n; i++) s += String(int(rng, 0, 9));
    return { task: 'sort', prompt: `sort:${s}=`, answer: [...s].sort().join('') };
  },
  check: exact,
};

const add: Task = {
  name: 'add',
  description: 'add two numbers of 1-6 digits: 12+345= -> 357',
  sample(rng) {
    const a = number(rng, int(rng, 1, 6));
    const b = number(rng, int(rng, 1, 6));
    return { task: 'add', prompt: `${a}+${b}=`, answer: String(Number(a) + Number(b)) };
  },
  check: exact,
};

// -------------------------------------------------------------------------------------------------
// Tasks with multi-step dynamics (issue 17): answers of 48 characters or more made of terms that
// each follow from the terms before them, so that no small model can write the whole answer in one
// denoising step. Every term has a fixed width, so a term and the terms it depends on sit at fixed
// distances in the answer. They use only the bundled model's characters. Added after count, sort
// and add, whose draws are unchanged.

/** `x` (0 <= x < 10^width) written with exactly `width` digits, leading zeros included. */
const padded = (x: number, width: number): string => String(x).padStart(width, '0');

/** Terms of `fib`'s answer. */
export const fibTerms = 14;

const fib: Task = {
  name: 'fib',
  heldOut: 100_110,
  description:
    'Fibonacci mod 1000 from a, b (0-999): 14 terms of 3 digits, each the sum of the two before it with its carries: fib:7,42= -> 007,042,049,091,140,...',
  sample(rng) {
    const seq = [Number(number(rng, int(rng, 1, 3))), Number(number(rng, int(rng, 1, 3)))];
    while (seq.length < fibTerms) seq.push(((seq.at(-1) as number) + (seq.at(-2) as number)) % 1000);
    return {
      task: 'fib',
      prompt: `fib:${seq[0]},${seq[1]}=`,
      answer: seq.map((x) => padded(x, 3)).join(','),
    };
  },
  check: exact,
};

/** Terms of `lcg`'s answer. */
export const lcgTerms = 17;

const lcg: Task = {
  name: 'lcg',
  heldOut: 724,
  description:
    'iterate x -> (a x + b) mod 100 (a 2-9, b 1-9, x 0-99): 17 terms of 2 digits: lcg:3,7,5= -> 05,22,73,26,...',
  sample(rng) {
    const a = int(rng, 2, 9);
    const b = int(rng, 1, 9);
    const seq = [Number(number(rng, int(rng, 1, 2)))];
    while (seq.length < lcgTerms) seq.push((a * (seq.at(-1) as number) + b) % 100);
    return {
      task: 'lcg',
      prompt: `lcg:${a},${b},${seq[0]}=`,
      answer: seq.map((x) => padded(x, 2)).join(','),
    };
  },
  check: exact,
};

/** Passes of bubble sort `bub`'s answer shows: enough to sort its 6-8 digits (the last rows repeat the sorted row). */
export const bubPasses = 7;

/** One pass of bubble sort: every adjacent pair, left to right, swapped when out of order. */
export function bubblePass(s: string): string {
  const d = [...s];
  for (let i = 0; i + 1 < d.length; i++) {
    if ((d[i] as string) > (d[i + 1] as string)) [d[i], d[i + 1]] = [d[i + 1] as string, d[i] as string];
  }
  return d.join('');
}

const bub: Task = {
  name: 'bub',
  description:
    'bubble sort 6-8 digits shown pass by pass, 7 passes (sorted by the last): bub:315247= -> 132457,123457,...',
  sample(rng) {
    const n = int(rng, 6, 8);
    let s = '';
    for (let i = 0; i < n; i++) s += String(int(rng, 0, 9));
    const rows: string[] = [];
    let row = s;
    for (let k = 0; k < bubPasses; k++) {
      row = bubblePass(row);
      rows.push(row);
    }
    return { task: 'bub', prompt: `bub:${s}=`, answer: rows.join(',') };
  },
  check: exact,
};

/** Input digits of `acc` and `rem`, and so answer digits. */
export const runningDigits = 48;

/**
 * A running state machine over 48 random input digits: answer digit i is the state after reading
 * input digits 0..i (`next(state, digit)`, from state 0). Each answer digit is the one before it
 * combined with one input digit, so a model that cannot combine many input digits at once decodes
 * the answer in order, a few digits a step: the dynamics of long arithmetic written out step by
 * step, with a prompt space far too large to memorise. A 0 is five times as likely as each other
 * digit: with uniform digits the answer digit is independent of its input digit and of its left
 * neighbour alone, and a small model found neither in 2,300 steps (pilot in examples/train/README.md).
 */
function runningTask(
  name: string,
  description: string,
  next: (state: number, digit: number) => number,
): Task {
  return {
    name,
    description,
    sample(rng) {
      let input = '';
      let answer = '';
      let state = 0;
      for (let i = 0; i < runningDigits; i++) {
        const d = Math.max(0, int(rng, 0, 13) - 4);
        input += String(d);
        state = next(state, d);
        answer += String(state);
      }
      return { task: name, prompt: `${name}:${input}=`, answer };
    },
    check: exact,
  };
}

const acc = runningTask(
  'acc',
  'running sum mod 10 of 48 digits, one answer digit per input digit: acc:3917...= -> 3287...',
  (s, d) => (s + d) % 10,
);

/** The divisor of `rem`'s long division. */
export const remDivisor = 7;

const rem = runningTask(
  'rem',
  'long division of a 48-digit number by 7, the remainder written after each digit: rem:3917...= -> 3236...',
  (r, d) => (10 * r + d) % remDivisor,
);

/** The tasks with multi-step dynamics, in the order they were added. */
export const multiStepTasks: readonly string[] = ['fib', 'lcg', 'bub', 'acc', 'rem'];

export const tasks: ReadonlyMap<string, Task> = new Map(
  [count, sort, add, fib, lcg, bub, acc, rem].map((t) => [t.name, t]),
);

/** The main task: the longest answers (30 characters on average), the one caching matters most for. */
export const defaultTask = 'count';

/** FNV-1a, 32 bits, over the UTF-8 bytes of `text`. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

/** Whether a prompt is reserved for evaluation (one in ten); training never uses these. */
export function isHeldOut(prompt: string): boolean {
  return fnv1a32(prompt) % 10 === 0;
}

/** The task called `name`, or an error that lists the tasks. */
export function taskNamed(name: string): Task {
  const t = tasks.get(name);
  if (t === undefined)
    throw new RangeError(`unknown task '${name}' (tasks: ${[...tasks.keys()].join(', ')})`);
  return t;
}

/** Distinct held-out problems of a task: Infinity where more than any request may ask for. */
export function heldOutCount(task: string): number {
  return taskNamed(task).heldOut ?? Number.POSITIVE_INFINITY;
}

/**
 * `n` distinct held-out problems of a task for evaluation, from createRng(seed) (default seed 1):
 * problems are sampled in turn and kept when their prompt is held out. Never training problems.
 * More than the task has (`heldOutCount`) is a RangeError, thrown before any is drawn.
 */
export function heldOutProblems(task: string, n: number, seed = 1): Problem[] {
  const t = taskNamed(task);
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`n must be an integer >= 0 (got ${n})`);
  if (n > heldOutCount(task))
    throw new RangeError(`task ${task} has ${heldOutCount(task)} held-out problems; asked for ${n}`);
  const rng = createRng(seed);
  const uniform = () => rng.uniform();
  const seen = new Set<string>();
  const out: Problem[] = [];
  for (let tries = 0; out.length < n; tries++) {
    if (tries > 1000 * (n + 10)) throw new Error(`task ${task}: cannot find ${n} distinct held-out problems`);
    const p = t.sample(uniform);
    if (isHeldOut(p.prompt) && !seen.has(p.prompt)) {
      seen.add(p.prompt);
      out.push(p);
    }
  }
  return out;
}
