/**
 * `cse`: common-subexpression elimination within a stage. Two instructions with the same op, the
 * same operand values and the same attributes compute the same results, so the later one is dropped
 * and its uses read the earlier one's results. Effects (`cache_write`) are never merged. A
 * `cache_read` is pure as long as nothing writes its resource: two reads of one resource with no
 * `cache_write` to it in between are merged; a read after a write is a new value.
 *
 * Values never cross stages except as carried inputs, so merging stops at stage boundaries.
 */
import { ops } from '../ir/ops.ts';
import type { Instr, Stage, StepProgram } from '../ir/types.ts';
import { attrKey, mapPrograms, mapStages, rebuildStage, Substitution } from './canonicalize.ts';
import type { Pass } from './state.ts';

function cseStage(s: Stage): Stage {
  const sub = new Substitution();
  const seen = new Map<string, Instr>();
  /** How many writes each resource has seen so far in this stage. */
  const writes = new Map<string, number>();
  const body: Instr[] = [];
  for (const original of s.body) {
    const ins = sub.instr(original);
    const spec = ops[ins.op];
    if (spec === undefined || spec.effect === true) {
      if (ins.op === 'cache_write') {
        const r = String(ins.attrs.resource);
        writes.set(r, (writes.get(r) ?? 0) + 1);
      }
      body.push(ins);
      continue;
    }
    const version = ins.op === 'cache_read' ? `@${writes.get(String(ins.attrs.resource)) ?? 0}` : '';
    const key = `${ins.op}(${ins.args.map((a) => a.id).join(',')})${attrKey(ins)}${version}`;
    const first = seen.get(key);
    if (first && first.results.length === ins.results.length) {
      ins.results.forEach((r, k) => {
        sub.replace(r, first.results[k] as (typeof ins.results)[number]);
      });
      continue;
    }
    seen.set(key, ins);
    body.push(ins);
  }
  return rebuildStage(s, body, sub);
}

/** Exposed for tests: CSE of one program. */
export const cseProgram = (p: StepProgram): StepProgram => mapStages(p, cseStage);

export const csePass: Pass = {
  name: 'cse',
  description:
    'merges identical pure instructions within a stage (cache reads of a resource until it is written)',
  run: (state) => mapPrograms(state, cseProgram),
};
