import type { CheckedPlan } from '../../dsl/check.ts';
import type { ModelConfig } from '../../model/config.ts';
import { modelFor } from '../../runtime/modelFor.ts';
import { ARCHES } from './kernels/ptx.ts';
import { assemble, PtxasError } from './ptxas.ts';
import { buildPtx } from './runner.ts';

export interface PtxCheck {
  /** Distinct kernel texts assembled, over every config and architecture. */
  readonly kernels: number;
  readonly maxRegisters: number;
  /** Kernels that spill, as `name@arch: n stores / m loads`. */
  readonly spills: readonly string[];
  readonly errors: readonly string[];
}

/**
 * What `verify --backend ptx` can establish without a GPU: every kernel of the plan, for each
 * configuration and for sm_80 and sm_90, assembles with ptxas, and nothing spills.
 */
export function checkPlanPtx(
  plan: CheckedPlan,
  configs: readonly ModelConfig[],
  maxCanvas: number,
): PtxCheck {
  const seen = new Set<string>();
  const spills: string[] = [];
  const errors: string[] = [];
  let maxRegisters = 0;
  for (const base of configs) {
    const config = modelFor(plan, base);
    for (const arch of ARCHES) {
      const { files } = buildPtx(plan, config, maxCanvas, { arch, gemm: 'mma-f16' }).render;
      for (const [name, text] of files) {
        const key = `${arch}\0${text}`;
        if (seen.has(key)) continue;
        seen.add(key);
        try {
          for (const r of assemble(text, arch, name)) {
            maxRegisters = Math.max(maxRegisters, r.registers);
            if (r.spillStores > 0 || r.spillLoads > 0)
              spills.push(`${name}@${arch}: ${r.spillStores} stores / ${r.spillLoads} loads`);
          }
        } catch (e) {
          if (!(e instanceof PtxasError)) throw e;
          errors.push(`${config.name} ${arch}: ${e.message}`);
        }
      }
    }
  }
  return { kernels: seen.size, maxRegisters, spills, errors };
}
