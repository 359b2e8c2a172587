/**
 * `dce`: dead-code elimination within a stage. An instruction stays when it has an effect
 * (`cache_write`, or an op the catalogue does not know) or when one of its results is used by a
 * kept instruction or an output. Inputs nobody uses are dropped, except those the runtime supplies
 * by role rather than by what the stage asks for (`carried`, `tokens`, `blocks`, `seqs`): index lists and
 * weights are looked up by the names a stage declares, and extra ones are ignored, so unused ones
 * can go.
 */
import { ops } from '../ir/ops.ts';
import type { InputRole, Stage, StepProgram } from '../ir/types.ts';
import { mapPrograms, mapStages } from './canonicalize.ts';
import type { Pass } from './state.ts';

/** Input roles that survive even when unused. */
export const keptInputRoles: ReadonlySet<InputRole> = new Set<InputRole>([
  'carried',
  'tokens',
  'blocks',
  'seqs',
]);

function dceStage(s: Stage): Stage {
  const live = new Set<number>(s.outputs.map((o) => o.value.id));
  const keep = new Array<boolean>(s.body.length).fill(false);
  for (let k = s.body.length - 1; k >= 0; k--) {
    const ins = s.body[k];
    if (!ins) continue;
    const spec = ops[ins.op];
    const effect = spec === undefined || spec.effect === true;
    if (effect || ins.results.some((r) => live.has(r.id))) {
      keep[k] = true;
      for (const a of ins.args) live.add(a.id);
    }
  }
  const inputs = s.inputs.filter((i) => keptInputRoles.has(i.role) || live.has(i.value.id));
  const body = s.body.filter((_, k) => keep[k]);
  return inputs.length === s.inputs.length && body.length === s.body.length ? s : { ...s, inputs, body };
}

/** Exposed for tests: DCE of one program. */
export const dceProgram = (p: StepProgram): StepProgram => mapStages(p, dceStage);

export const dcePass: Pass = {
  name: 'dce',
  description: 'removes unused pure instructions and unused index/weight inputs (keeps cache writes)',
  run: (state) => mapPrograms(state, dceProgram),
};
