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

export const tasks: ReadonlyMap<string, Task> = new Map([count, sort, add].map((t) => [t.name, t]));

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

/**
 * `n` distinct held-out problems of a task for evaluation, from createRng(seed) (default seed 1):
 * problems are sampled in turn and kept when their prompt is held out. Never training problems.
 */
export function heldOutProblems(task: string, n: number, seed = 1): Problem[] {
  const t = taskNamed(task);
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`n must be an integer >= 0 (got ${n})`);
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
