/**
 * Fault injection for the mutation test (DESIGN.md section 4: a check must be shown able to fail).
 * A fault is one primitive of the compiled backends whose every output is scaled by 1 + relative;
 * with it, `kvplan verify --backend cpu|webgpu` must exit 1, or verify is not checking anything.
 *
 * It is switched on from the environment, and only by two variables together, so that a stray
 * one can never make a normal run compute wrong numbers:
 *   KVPLAN_FAULT=<primitive>:<relative>   e.g. rmsnorm:0.01 (the RMSNorm output times 1.01)
 *   KVPLAN_FAULT_ARMED=1                  the explicit "I want wrong results"
 * KVPLAN_FAULT alone is ignored, with a warning. An armed fault prints a warning on stderr once
 * per process. The backends add the fault to the code they generate only when it is active (a C
 * `#define`, a WGSL factor at the primitive's output), so it is part of the compiled library's
 * content hash and of the WebGPU pipeline's key: a faulty artifact is never reused by a normal run.
 */

export const faultPrimitives = ['gemm', 'attention', 'rmsnorm', 'rope', 'swiglu'] as const;
export type FaultPrimitive = (typeof faultPrimitives)[number];

export interface Fault {
  readonly primitive: FaultPrimitive;
  readonly relative: number;
  /** What the primitive's outputs are multiplied by: 1 + relative. */
  readonly factor: number;
}

export class FaultError extends Error {
  override readonly name = 'FaultError';
}

const isPrimitive = (s: string): s is FaultPrimitive => (faultPrimitives as readonly string[]).includes(s);

/** Parses `<primitive>:<relative>`; the relative perturbation is finite, non-zero and above -1. */
export function parseFault(spec: string): Fault {
  const m = /^([a-z]+):(.+)$/.exec(spec.trim());
  const usage = `expected <primitive>:<relative> with a primitive among ${faultPrimitives.join(', ')}`;
  if (!m) throw new FaultError(`KVPLAN_FAULT='${spec}': ${usage}`);
  const [, primitive = '', rel = ''] = m;
  if (!isPrimitive(primitive)) throw new FaultError(`KVPLAN_FAULT='${spec}': ${usage}`);
  const relative = Number(rel);
  if (!Number.isFinite(relative) || relative === 0 || relative <= -1)
    throw new FaultError(
      `KVPLAN_FAULT='${spec}': the relative perturbation must be a non-zero number above -1`,
    );
  return { primitive, relative, factor: 1 + relative };
}

export function describeFault(f: Fault): string {
  return `${f.primitive} outputs scaled by ${f.factor} (relative ${f.relative})`;
}

const warned = new Set<string>();

/**
 * The armed fault of this process, or undefined (always, where there is no `process`: a
 * browser). Warns on stderr, once per distinct setting, when a fault is armed or set but ignored.
 */
export function activeFault(
  env: Readonly<Record<string, string | undefined>> | undefined = globalThis.process?.env,
  warn: (line: string) => void = (line) => globalThis.process?.stderr.write(line),
): Fault | undefined {
  const spec = env?.KVPLAN_FAULT;
  if (!spec) return undefined;
  const armed = env.KVPLAN_FAULT_ARMED === '1';
  const once = (line: string) => {
    if (warned.has(line)) return;
    warned.add(line);
    warn(line);
  };
  if (!armed) {
    once(`kvplan: warning: KVPLAN_FAULT='${spec}' is ignored (fault injection needs KVPLAN_FAULT_ARMED=1)\n`);
    return undefined;
  }
  const fault = parseFault(spec);
  once(
    `kvplan: WARNING: FAULT INJECTION ACTIVE: ${describeFault(fault)} in the cpu and webgpu backends; ` +
      'their results are deliberately wrong (KVPLAN_FAULT, KVPLAN_FAULT_ARMED)\n',
  );
  return fault;
}
