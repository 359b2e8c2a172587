import { describe, test } from 'vitest';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { exampleCases, examplePlan } from '../../runtime/support.ts';
import { expectCpuMatchesReference } from './againstReference.ts';

describe('CPU backend against the float64 reference, step by step', () => {
  test.each(exampleCases)(
    '%s on %s: every step within the float32 budget derived from eager float32',
    async (name, _configName, base) => {
      const plan = examplePlan(name);
      await expectCpuMatchesReference(plan, modelFor(plan, base), 21);
    },
  );
});
