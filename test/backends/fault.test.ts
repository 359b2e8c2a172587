import { describe, expect, test } from 'vitest';
import { activeFault, FaultError, faultPrimitives, parseFault } from '../../src/backends/fault.ts';

/** activeFault with a private environment and the warnings it prints collected. */
function active(env: Record<string, string>) {
  const lines: string[] = [];
  const fault = activeFault(env, (l) => lines.push(l));
  return { fault, lines };
}

describe('fault injection settings', () => {
  test('a primitive and a relative perturbation', () => {
    expect(parseFault('rmsnorm:0.01')).toEqual({ primitive: 'rmsnorm', relative: 0.01, factor: 1.01 });
    expect(parseFault(' attention:-1e-3 ')).toEqual({
      primitive: 'attention',
      relative: -1e-3,
      factor: 1 - 1e-3,
    });
    for (const p of faultPrimitives) expect(parseFault(`${p}:1`).factor).toBe(2);
  });

  test.each([
    'rmsnorm',
    'rmsnorm:',
    'softmax:0.01',
    'rmsnorm:x',
    'rmsnorm:0',
    'rmsnorm:-1',
    'rmsnorm:Infinity',
  ])("'%s' is refused with what is expected", (spec) => {
    expect(() => parseFault(spec)).toThrow(FaultError);
    expect(() => parseFault(spec)).toThrow(/KVPLAN_FAULT=/);
  });

  test('nothing is active without KVPLAN_FAULT, and nothing is printed', () => {
    expect(active({})).toEqual({ fault: undefined, lines: [] });
    expect(active({ KVPLAN_FAULT_ARMED: '1' })).toEqual({ fault: undefined, lines: [] });
  });

  test('KVPLAN_FAULT alone is ignored, with a warning that says how it would be armed', () => {
    // A distinct setting each time: a warning already printed is not printed again.
    for (const [i, armed] of [undefined, '0', 'yes', 'true'].entries()) {
      const { fault, lines } = active({
        KVPLAN_FAULT: `gemm:${i + 1}`,
        ...(armed === undefined ? {} : { KVPLAN_FAULT_ARMED: armed }),
      });
      expect(fault).toBeUndefined();
      expect(lines.join('')).toMatch(
        new RegExp(`KVPLAN_FAULT='gemm:${i + 1}' is ignored .*KVPLAN_FAULT_ARMED=1`),
      );
    }
  });

  test('an armed fault is active and announced loudly, once per process', () => {
    const env = { KVPLAN_FAULT: 'rope:0.25', KVPLAN_FAULT_ARMED: '1' };
    const first = active(env);
    expect(first.fault).toEqual({ primitive: 'rope', relative: 0.25, factor: 1.25 });
    expect(first.lines).toHaveLength(1);
    expect(first.lines[0]).toMatch(/WARNING: FAULT INJECTION ACTIVE: rope outputs scaled by 1\.25/);
    expect(active(env)).toEqual({ fault: first.fault, lines: [] });
  });

  test('an armed but malformed fault is an error, not a silent normal run', () => {
    expect(() => active({ KVPLAN_FAULT: 'rmsnorm=0.01', KVPLAN_FAULT_ARMED: '1' })).toThrow(FaultError);
  });

  test('where there is no environment (a browser) no fault is active', () => {
    expect(activeFault(undefined)).toBeUndefined();
  });
});
