import { advise } from '../cost/advise.ts';
import { adviceJson, formatAdvice } from '../cost/format.ts';
import { findHardware } from '../cost/hardware.ts';
import { cpuHardware } from '../cost/probe.ts';
import type { CheckedPlan } from '../dsl/check.ts';
import type { ModelConfig } from '../model/config.ts';
import type { ExplainCommandOptions } from './explain.ts';
import { Exit, type Io } from './io.ts';

/**
 * `kvplan explain --cost`: the advisor's prediction for one plan. An unknown hardware name is a
 * usage error; measuring `cpu` compiles and runs the CPU backend's GEMM once, then is kept.
 */
export async function printAdvice(
  plan: CheckedPlan,
  config: ModelConfig,
  o: ExplainCommandOptions,
  io: Io,
): Promise<number> {
  let hardware: Awaited<ReturnType<typeof findHardware>>;
  try {
    hardware = await findHardware(o.hardware, () => cpuHardware({ remeasure: o.remeasure === true }));
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    io.err(`kvplan: --hardware: ${e.message}\n`);
    return Exit.usage;
  }
  const advice = advise(plan, config, hardware, {
    batch: o.batch,
    promptLength: o.promptLength,
    genLength: o.genLength,
  });
  io.out(o.json ? adviceJson(advice) : formatAdvice(advice));
  return Exit.ok;
}
