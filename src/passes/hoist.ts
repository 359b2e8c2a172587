import { layerOfStage, resources as named } from '../ir/names.ts';
import type { Instr, Stage, StepProgram, Value } from '../ir/types.ts';
import { dceProgram } from './dce.ts';
import type { Pass, PipelineState } from './state.ts';

const maxId = (p: StepProgram): number => {
  let top = -1;
  for (const s of p.stages) {
    for (const i of s.inputs) top = Math.max(top, i.value.id);
    for (const i of s.body) for (const r of i.results) top = Math.max(top, r.id);
  }
  return top;
};

const partialNames = (layer: number, segment: string) => ({
  o: named.partial('o', layer, segment),
  lse: named.partial('lse', layer, segment),
});

/**
 * Step-invariant hoisting. A split segment marked `reused until …` has a partial (O, LSE) whose
 * inputs change only when its condition fires; the `cached` phase computes and stores it, and this
 * pass derives the `reuse` phase, in which the attention of that segment is replaced by reading the
 * stored partial back for the rows of the step; the attention's now-dead key gathers and key list
 * are removed. (Index sets chosen at an event — MAGE's, or
 * Sparse-dLLM's kept keys — are hoisted on the host: the inspector evaluates a `select` only at its
 * moment and reuses the list until the next.)
 */
export function deriveReusePhase(cached: StepProgram): StepProgram | undefined {
  const resources = new Set(cached.resources.map((r) => r.name));
  let next = maxId(cached) + 1;
  let hoisted = 0;
  const stages = cached.stages.map((stage): Stage => {
    const layer = layerOfStage(stage.name);
    if (layer === undefined) return stage;
    const reused = new Set<string>();
    const body: Instr[] = [];
    for (const instr of stage.body) {
      const segment = instr.op === 'attention' ? instr.attrs.segment : undefined;
      const names = typeof segment === 'string' ? partialNames(layer, segment) : undefined;
      if (!names || !resources.has(names.o) || !resources.has(names.lse)) {
        const writesReused = instr.op === 'cache_write' && reused.has(String(instr.attrs.resource));
        if (!writesReused) body.push(instr);
        continue;
      }
      reused.add(names.o).add(names.lse);
      hoisted++;
      const rows = instr.args[3] as Value;
      const [o, lse] = instr.results as [Value, Value];
      const oRes = cached.resources.find((r) => r.name === names.o);
      const lseRes = cached.resources.find((r) => r.name === names.lse);
      if (!oRes || !lseRes) continue;
      const read = (name: string, shape: typeof oRes.shape): Value => {
        const v: Value = { id: next++, type: { kind: 'tensor', dtype: 'f32', shape } };
        body.push({ op: 'cache_read', results: [v], args: [], attrs: { resource: name } });
        return v;
      };
      body.push({ op: 'gather', results: [o], args: [read(names.o, oRes.shape), rows], attrs: {} });
      body.push({ op: 'gather', results: [lse], args: [read(names.lse, lseRes.shape), rows], attrs: {} });
    }
    return { ...stage, body };
  });
  if (hoisted === 0) return undefined;
  // The replaced attentions leave their key gathers and key lists dead; the inspector supplies no
  // key list for a reused segment, so they must go for the phase to run.
  return dceProgram({
    name: cached.name.replace(/\.cached$/, '.reuse'),
    resources: cached.resources,
    stages,
  });
}

export const hoistPass: Pass = {
  name: 'hoist',
  description:
    'derive the reuse phase: reused split segments read their stored partial instead of recomputing it',
  run(state: PipelineState): PipelineState {
    const cached = state.phases.get('cached');
    const reuse = cached ? deriveReusePhase(cached) : undefined;
    if (!reuse) return state;
    return { ...state, phases: new Map([...state.phases, ['reuse', reuse]]) };
  },
};
