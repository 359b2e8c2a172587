// The shared render walk names where a rendering error arose: target, phase, stage, kernel and
// instruction, whatever the backend and whichever emitter failed.
import { describe, expect, test } from 'vitest';
import { renderPtx } from '../../src/backends/cuda-ptx/render.ts';
import { type Emitters, type InputSlot, Target, walkStage } from '../../src/backends/walk.ts';
import type { Value } from '../../src/ir/types.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import type { Kernel } from '../../src/passes/kernelIR.ts';
import { examplePlan } from '../runtime/support.ts';

class RecordingError extends Error {}

/** A target that places every value by name and renders nothing itself. */
class NamedTarget extends Target<string> {
  readonly backend = 'Test';
  error(message: string): Error {
    return new RecordingError(message);
  }
  slot(s: InputSlot): string {
    return s.name;
  }
  carried(name: string): string {
    return name;
  }
  resource(name: string): string {
    return name;
  }
  enter(_k: Kernel): void {}
  place(v: Value): string {
    return `%${v.id}`;
  }
  gather(): void {}
}

const { state } = compilePlan(examplePlan('baseline'), presets.tiny as ModelConfig, {
  target: 'cpu',
  canvas: 16,
});
const program = state.phases.get('refresh');
const kernels = state.kernels?.get('refresh');
const stage = program?.stages.find((s) => s.name === 'layer.0');

describe('errors of the render walk', () => {
  test('a missing emitter is reported with target, phase, stage, kernel and instruction', () => {
    if (!stage || !kernels) throw new Error('the baseline plan lowers to a refresh phase with layer.0');
    const render = () => walkStage(stage, kernels, new NamedTarget(16), {}, 'refresh');
    expect(render).toThrow(RecordingError);
    expect(render).toThrow(
      /^Test backend, phase refresh, stage layer\.0, kernel \S+, instruction %\d+ = \w+: the Test backend has no rendering for op '\w+'$/,
    );
  });

  test('an emitter that fails is located the same way, keeping its own error as the cause', () => {
    if (!stage || !kernels) throw new Error('the baseline plan lowers to a refresh phase with layer.0');
    const boom = new Error('emitter failed');
    const failing: Emitters<string, NamedTarget> = new Proxy(
      {},
      {
        get: () => () => {
          throw boom;
        },
      },
    );
    try {
      walkStage(stage, kernels, new NamedTarget(16), failing, 'refresh');
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).toMatch(
        /^Test backend, phase refresh, stage layer\.0, kernel \S+, instruction .*: emitter failed$/,
      );
      expect((e as Error).cause).toBe(boom);
    }
  });
});

describe('layouts the kernel IR chose', () => {
  test('a GEMM weight in a layout the backend does not read is refused, naming both layouts', () => {
    // Kernels laid out for the CPU (packed-k16) rendered as PTX, whose GEMM reads k-major.
    const plan = examplePlan('baseline');
    const config = presets.tiny as ModelConfig;
    const { state } = compilePlan(plan, config, { target: 'cpu', canvas: 16 });
    if (!state.kernels || !state.memory) throw new Error('the pipeline produced no kernels');
    expect(() =>
      renderPtx(config, state.phases, state.kernels as never, state.memory as never, {
        arch: 'sm_80',
        maxCanvas: 16,
      }),
    ).toThrow(/: the layout pass chose packed-k16, the PTX GEMM reads k-major$/);
  });
});
