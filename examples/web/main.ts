/// <reference types="@webgpu/types" />
/**
 * The browser page: compiles the plan in the textarea for WebGPU, validates its WGSL on
 * `navigator.gpu`, runs a short generation with WebGpuRunner and compares every step with the
 * float64 golden forward computed here in JS. The last thing it does is write one line of JSON into
 * `#result` (see `PageResult`), which test/web/browser.test.ts reads.
 */
import { acquireDevice, validateWgsl } from '../../src/backends/webgpu/device.ts';
import { buildWebGpu, type WebGpuBuild, WebGpuRunner } from '../../src/backends/webgpu/runner.ts';
import { shaderDef, wgslSource } from '../../src/backends/webgpu/shaders.ts';
import { type CheckedPlan, checkSource } from '../../src/dsl/check.ts';
import { formatDiagnostic } from '../../src/dsl/diagnostics.ts';
import '../../src/dsl/polyfill.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { modelFor } from '../../src/runtime/modelFor.ts';
import { ReferenceRunner } from '../../src/runtime/referenceRunner.ts';
import { type GenerationResult, type StepInfo, simulateGeneration } from '../../src/runtime/simulate.ts';
import { float32Budget } from '../../src/runtime/verify.ts';
import defaultPlan from '../fast-dllm-dual.kvp';
import type { PageResult } from './result.ts';

/** The generation the page runs: small enough for SwiftShader, long enough for refresh and cached steps. */
const setup = { preset: 'tiny', prompt: [3, 1, 4, 1], genLen: 8, seed: 21, overrides: { block: '4' } };

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;
const exp = (x: number) => x.toExponential(2);

declare global {
  interface Window {
    /** The WGSL the page compiled, by shader name (read by the test for Node-side validation). */
    kvplanWgsl?: Record<string, string>;
  }
}

function status(line: string): void {
  $('#status').textContent += `${line}\n`;
}

function showSteps(
  infos: readonly StepInfo[],
  result: GenerationResult,
  checked: (phase: string) => boolean,
): void {
  const table = $<HTMLTableElement>('#steps');
  const body = table.tBodies[0] as HTMLTableSectionElement;
  body.replaceChildren();
  infos.forEach((info, i) => {
    const rec = result.steps[i];
    const tr = document.createElement('tr');
    const cells = [
      String(info.step),
      `${info.block}.${info.blockStep}`,
      info.phase,
      info.rows.join(' / '),
      info.committed.map((c) => `${c.position}:${c.token}`).join(' '),
      info.ms.toFixed(1),
      rec ? `${exp(rec.deviation)}${checked(rec.phase) ? '' : ' (approx.)'}` : '',
    ];
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.append(td);
    }
    body.append(tr);
  });
  table.hidden = false;
}

const emptyResult = (): PageResult => ({
  ok: false,
  compiled: false,
  shaders: 0,
  wgslValid: null,
  wgslErrors: [],
  adapter: null,
  ran: false,
  steps: 0,
  checkedSteps: 0,
  maxDeviation: null,
  maxDeviationAll: null,
  scale: null,
  eagerError: null,
  withinBudget: null,
  msPerStep: null,
});

/** Fills `r` as it goes, so that a failure still reports how far it got. */
async function compileAndRun(text: string, r: PageResult): Promise<void> {
  const file = { path: 'plan.kvp', text };
  const checkedSource = checkSource(file, { overrides: new Map(Object.entries(setup.overrides)) });
  for (const d of checkedSource.diagnostics) status(formatDiagnostic(file, d));
  const plan = checkedSource.plans[0] as CheckedPlan | undefined;
  if (!plan) throw new Error('the plan does not check (see the diagnostics above)');
  r.plan = plan.plan.name;
  r.exact = plan.classification.exact;
  const config = modelFor(plan, presets[setup.preset] as (typeof presets)[string]);
  const prompt = Int32Array.from(setup.prompt);
  const L = prompt.length + setup.genLen;

  let t = performance.now();
  const build: WebGpuBuild = buildWebGpu(plan, config, L);
  r.compiled = true;
  r.shaders = build.manifest.shaders.length;
  const wgsl = Object.fromEntries(build.manifest.shaders.map((n) => [n, wgslSource(shaderDef(n))]));
  window.kvplanWgsl = wgsl;
  const stages = Object.values(build.manifest.phases).reduce((s, p) => s + p.length, 0);
  status(
    `compiled ${plan.plan.name} (${plan.classification.exact ? 'exact' : 'approximate'}) for WGSL in ${(performance.now() - t).toFixed(0)} ms: ` +
      `${r.shaders} shaders, ${stages} stages, ${build.manifest.buffers.length} buffers`,
  );

  const acq = await acquireDevice();
  if (!acq.ok) {
    r.noAdapter = acq.reason;
    status(`no WebGPU device: ${acq.reason}; the WGSL is not validated or run here`);
    r.ok = true;
    return;
  }
  const device = acq.gpu.device;
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  r.adapter = info
    ? [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown'
    : 'unknown';
  status(`WebGPU device from ${acq.gpu.source} (${r.adapter})`);

  t = performance.now();
  for (const [name, code] of Object.entries(wgsl))
    for (const e of await validateWgsl(device, code)) r.wgslErrors.push(`${name}: ${e}`);
  r.wgslValid = r.wgslErrors.length === 0;
  status(
    r.wgslValid
      ? `WGSL valid: ${r.shaders} shader modules created in ${(performance.now() - t).toFixed(0)} ms`
      : `WGSL invalid:\n${r.wgslErrors.join('\n')}`,
  );
  if (!r.wgslValid) return;

  const weights = randomWeights(config, setup.seed);
  const gen = { config, weights, prompt, genLen: setup.genLen, seed: setup.seed, compare: true };
  const infos: StepInfo[] = [];
  t = performance.now();
  // simulateGeneration releases the runner it makes when the generation ends.
  const result = await simulateGeneration(plan, build.lowered, {
    ...gen,
    runner: (n) => new WebGpuRunner(build, weights, n, device),
    onStep: (s) => {
      infos.push(s);
      status(`step ${s.step} (${s.phase}): rows per layer ${s.rows.join('/')}, ${s.ms.toFixed(1)} ms`);
    },
  });
  r.ran = true;
  r.steps = result.steps.length;
  r.msPerStep = infos.reduce((s, i) => s + i.ms, 0) / Math.max(1, infos.length);
  status(`generated ${Array.from(result.tokens).join(' ')} in ${(performance.now() - t).toFixed(0)} ms`);

  // The budget: a multiple of what eager float32 evaluation of the same programs deviates by.
  const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
  const eager = await simulateGeneration(plan, lowered, {
    ...gen,
    runner: (n) => new ReferenceRunner(lowered, weights, n, true),
  });
  const checked = (phase: string) => plan.classification.exact || phase === 'refresh';
  const gpuSteps = result.steps.filter((s) => checked(s.phase));
  const eagerSteps = eager.steps.filter((s) => checked(s.phase));
  r.checkedSteps = gpuSteps.length;
  r.maxDeviation = Math.max(0, ...gpuSteps.map((s) => s.deviation));
  r.maxDeviationAll = Math.max(0, ...result.steps.map((s) => s.deviation));
  r.scale = Math.max(0, ...gpuSteps.map((s) => s.scale));
  r.eagerError = Math.max(0, ...eagerSteps.map((s) => s.deviation));
  const eagerError = r.eagerError;
  r.withinBudget = gpuSteps.every((s) => s.deviation <= float32Budget(eagerError, s.scale));
  showSteps(infos, result, checked);
  status(
    `max |gpu − golden| over ${r.checkedSteps} checked steps ${exp(r.maxDeviation)} ` +
      `(eager float32 ${exp(r.eagerError)}, budget ${exp(float32Budget(r.eagerError, r.scale))}): ` +
      (r.withinBudget ? 'within budget' : 'OVER BUDGET'),
  );
  r.ok = r.withinBudget && r.checkedSteps > 0;
}

async function onRun(): Promise<void> {
  const button = $<HTMLButtonElement>('#run');
  button.disabled = true;
  $('#status').textContent = '';
  $('#result').textContent = '';
  $<HTMLTableElement>('#steps').hidden = true;
  const r = emptyResult();
  try {
    await compileAndRun($<HTMLTextAreaElement>('#plan').value, r);
  } catch (e) {
    r.ok = false;
    r.error = e instanceof Error ? e.message : String(e);
    status(`error: ${r.error}`);
  }
  $('#result').textContent = JSON.stringify(r);
  button.disabled = false;
}

$<HTMLTextAreaElement>('#plan').value = defaultPlan;
$('#run').addEventListener('click', () => void onRun());
