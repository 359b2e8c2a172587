import type { CheckedPlan } from '../dsl/check.ts';
import { printExpr } from '../dsl/printer.ts';
import { describePositions } from '../dsl/semantics/describe.ts';
import { reusedSegments } from '../dsl/semantics/layerRules.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import { printProgram } from '../ir/printer.ts';
import type { ModelConfig } from '../model/config.ts';
import { compilePlan } from '../passes/compile.ts';
import { type SampleState, sampleStates } from './sample.ts';
import { blockLength } from './simulate.ts';

function schedule(plan: CheckedPlan, lowered: LoweredPlan): string[] {
  const refreshes = plan.typed.plan.body.filter((s) => s.kind === 'refresh');
  const when = refreshes.map((r) => `\`${printExpr(r.set)}\` when \`${printExpr(r.when)}\``);
  const out = [
    'schedule (decided by the inspector each step, layer by layer):',
    `  refresh phase: when a refresh of every row fires on every layer${when.length ? ` (refresh rules: ${when.join('; ')})` : ' (never: no refresh rule)'}`,
    '  cached phase: otherwise; each layer recomputes its rows and reads the other keys from its caches',
  ];
  for (const r of lowered.layers) {
    const reused = reusedSegments(r);
    if (reused.length) {
      out.push(
        `  layer ${r.layer}: reuse phase for ${reused.map((s) => `'${s.name}' until \`${printExpr(s.reusedUntil ?? s.keys)}\``).join(', ')}`,
      );
    }
  }
  return out;
}

/** What `kvplan explain` prints for one plan on one model: phases, schedule, sample index lists, IR. */
export function explainPlan(path: string, plan: CheckedPlan, config: ModelConfig, withIr: boolean): string {
  const { lowered } = compilePlan(plan, config, { target: 'reference' });
  const lines = [
    `plan ${plan.plan.name}  (${path}; model ${config.name}: ${config.layers} layers, d_model ${config.dModel}, ${config.heads} heads / ${config.kvHeads} kv heads)`,
  ];
  lines.push(`parameters: ${[...plan.params].map(([k, v]) => `${k} = ${v}`).join(', ') || '(none)'}`);
  lines.push(
    `classification: ${plan.classification.exact ? 'exact' : `approximate: ${plan.classification.premise}`}`,
  );
  const programs = [
    lowered.programs.refresh,
    lowered.programs.cached,
    ...(lowered.programs.reuse ? [lowered.programs.reuse] : []),
  ];
  lines.push(
    `phases: ${programs.map((p) => `${p.name} (${p.stages.length} stages, ${p.stages.reduce((a, s) => a + s.body.length, 0)} instructions)`).join(', ')}`,
  );
  lines.push(...schedule(plan, lowered));
  const genLen = 2 * Math.min(blockLength(plan, 16), 16);
  const samples = sampleStates(plan, lowered, 4, genLen);
  const { canvas, layers } = samples[samples.length - 1] as SampleState;
  lines.push(
    `index lists for a sample token state: step ${canvas.step} (block ${canvas.block}, block step ${canvas.blockStep}), prompt 4, canvas ${canvas.length}`,
  );
  for (const lp of layers) {
    lines.push(`  layer ${lp.layer}: ${lp.full ? 'full refresh' : lp.variant}`);
    for (const [name, list] of lp.lists) {
      const text =
        list.length === 0
          ? 'none'
          : list.length === canvas.length
            ? 'all'
            : describePositions(canvas, [...list]);
      lines.push(`    ${name} (${list.length}): ${text}`);
    }
  }
  if (withIr) for (const p of programs) lines.push('', printProgram(p).trimEnd());
  return `${lines.join('\n')}\n`;
}
