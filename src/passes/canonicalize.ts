/**
 * `canonicalize`: local rewrites that put a step program into one normal form, so that CSE sees
 * equal computations as equal and DCE can drop what the rewrites bypass.
 *
 * - `reshape(reshape(x))` → one `reshape(x)`; a reshape to the shape its operand already has → x.
 * - `gather(place(x, r), r)` and `gather(scatter(b, r, x), r)` with the very same index value r → x.
 *   This relies on index lists holding distinct positions, which the inspector guarantees (it builds
 *   every list from a token set, in ascending order).
 * - An op marked `commutative` in the catalogue (`add`, exactly so in floating point) takes its
 *   operands in value-id order.
 *
 * Instructions that a rewrite bypasses stay in place; `dce` removes them once they are unused.
 */
import { ops } from '../ir/ops.ts';
import { printAttrs } from '../ir/printer.ts';
import { type Instr, type Output, type Stage, type StepProgram, sameType, type Value } from '../ir/types.ts';
import type { Pass, PipelineState } from './state.ts';

/**
 * Applies `f` to every phase's program. Derived products (kernels, memory plans) describe the old
 * programs, so they are dropped when a program changes; a pass that changes nothing returns the
 * state as it was.
 */
export function mapPrograms(state: PipelineState, f: (p: StepProgram) => StepProgram): PipelineState {
  let changed = false;
  const phases = new Map<string, StepProgram>();
  for (const [name, p] of state.phases) {
    const q = f(p);
    if (q !== p) changed = true;
    phases.set(name, q);
  }
  return changed ? { lowered: state.lowered, phases } : state;
}

/** Applies `f` to every stage of a program; the program object is kept when no stage changes. */
export function mapStages(p: StepProgram, f: (s: Stage) => Stage): StepProgram {
  const stages = p.stages.map(f);
  return stages.every((s, i) => s === p.stages[i]) ? p : { ...p, stages };
}

/** Replacement of values by others within a stage; chains resolve to their end. */
export class Substitution {
  private readonly map = new Map<number, Value>();

  get size(): number {
    return this.map.size;
  }
  resolve(v: Value): Value {
    let cur = v;
    for (let next = this.map.get(cur.id); next !== undefined; next = this.map.get(cur.id)) cur = next;
    return cur;
  }
  /** From now on, uses of `from` read `to` instead. */
  replace(from: Value, to: Value): void {
    const target = this.resolve(to);
    if (target.id !== from.id) this.map.set(from.id, target);
  }
  /** The instruction with its operands resolved (the same object when none changes). */
  instr(i: Instr): Instr {
    const args = i.args.map((a) => this.resolve(a));
    return args.every((a, k) => a === i.args[k]) ? i : { ...i, args };
  }
  outputs(os: readonly Output[]): readonly Output[] {
    const out = os.map((o) => {
      const v = this.resolve(o.value);
      return v === o.value ? o : { ...o, value: v };
    });
    return out.every((o, k) => o === os[k]) ? os : out;
  }
}

/** A stage rebuilt from a new body and a substitution applied to its outputs. */
export function rebuildStage(s: Stage, body: readonly Instr[], sub: Substitution): Stage {
  const outputs = sub.outputs(s.outputs);
  const sameBody = body.length === s.body.length && body.every((i, k) => i === s.body[k]);
  return sameBody && outputs === s.outputs ? s : { ...s, body, outputs };
}

/** A stable key of an instruction's attributes. */
export const attrKey = (i: Instr): string => printAttrs(i.attrs);

function canonicalizeStage(s: Stage): Stage {
  const sub = new Substitution();
  const producer = new Map<number, Instr>();
  const body: Instr[] = [];
  for (const original of s.body) {
    let ins = sub.instr(original);
    const [a0, a1] = ins.args;
    const [r0] = ins.results;
    if (ins.op === 'reshape' && a0 && r0 && r0.type.kind === 'tensor') {
      const from = producer.get(a0.id);
      const inner = from?.op === 'reshape' ? from.args[0] : undefined;
      if (inner) ins = { ...ins, args: [inner] };
      const x = ins.args[0] as Value;
      if (sameType(x.type, r0.type)) {
        // A reshape to the shape the value already has: the value itself.
        sub.replace(r0, x);
        body.push(ins);
        continue;
      }
    }
    if (ins.op === 'gather' && a0 && a1 && r0) {
      const from = producer.get(a0.id);
      // gather(place(x, r), r) = x and gather(scatter(b, r, x), r) = x (distinct positions in r).
      const x =
        from?.op === 'place' && from.args[1]?.id === a1.id
          ? from.args[0]
          : from?.op === 'scatter' && from.args[1]?.id === a1.id
            ? from.args[2]
            : undefined;
      if (x && sameType(x.type, r0.type)) sub.replace(r0, x);
    }
    if (ops[ins.op]?.commutative && a0 && a1 && a1.id < a0.id) ins = { ...ins, args: [a1, a0] };
    for (const r of ins.results) producer.set(r.id, ins);
    body.push(ins);
  }
  return rebuildStage(s, body, sub);
}

/** Exposed for tests: canonicalizes one program. */
export function canonicalizeProgram(p: StepProgram): StepProgram {
  return mapStages(p, canonicalizeStage);
}

export const canonicalizePass: Pass = {
  name: 'canonicalize',
  description:
    'folds reshape chains and identity reshapes, gather(place/scatter(.., r, x), r) -> x, orders the operands of commutative ops (add) by value id',
  run: (state) => mapPrograms(state, canonicalizeProgram),
};
