import {
  bundledModelFor,
  checkPlan,
  formatDiagnostics,
  generate,
  openModel,
  prepare,
  type StepEvent,
  verifyPlan,
} from '../../src/index.ts';

// 1. Author a plan in code: the cache of Fast-dLLM's DualCache with a decode rule that commits k
//    positions per step; its block length is taken from a variable.
const block = 8;
const source = `
plan dual_cache(block: int = ${block} in [2, 32], k: int = 2 in [1, 32]) {
  blocks block
  refresh all when block_start   # a full forward at each block start fills the cache
  compute current_block          # later steps recompute the current block only
  cache kv of all
  attend all
  decode per_step(k) by confidence in current_block  # commit the k most confident
}
`;

// 2. Check it. A mistake in the plan comes back as diagnostics, never as an exception.
const checked = checkPlan({ text: source, path: 'dual_cache.kvp' });
if (!checked.ok) throw new Error(formatDiagnostics(checked));
const [plan] = checked.plans;
if (plan === undefined) throw new Error('no plan');
const { classification } = plan;
console.log(classification.exact ? 'exact' : `approximate: ${classification.premise}`);

// 3. Verify it against full attention: whole generations on a random model, every step
//    compared with a float64 full forward (at refresh steps, and where its premise holds).
const verdict = await verifyPlan(plan, { configs: ['tiny'], cases: 1 });
for (const c of verdict.checks) console.log(`${c.name} ${c.ok ? 'ok' : 'FAILED'}: ${c.detail}`);

// 4. Generate with it on the bundled model trained for its attention structure, and read the
//    sets of every step: the rows it recomputed and the positions it committed.
const name = bundledModelFor(plan); // 'step-dllm': full attention, no AR shift
if (name === undefined) throw new Error('no bundled model for this plan');
const model = await openModel({ bundled: name });
const prepared = await prepare(plan, model, { backend: 'reference' });
const events: StepEvent[] = [];
const result = await generate(prepared, {
  prompt: 'acc:527000382809994073034064002575000293305685190000=',
  genLength: 24,
  onStep: (event) => {
    events.push(event);
    const rows = event.computed.length;
    const commits = event.committed.map((c) => c.position).join(',');
    console.log(`step ${event.step} block ${event.block} ${event.phase}: ${rows} rows, commit ${commits}`);
  },
});
const [answer] = result.sequences;
console.log(answer?.text); // the first 24 running sums mod 10 of the digits, if the model got them right

// What test/api/worked-example.test.ts reads back after running this file.
export { checked, events, model, result, verdict };
