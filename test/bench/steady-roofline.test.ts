import { describe, expect, it } from 'vitest';
import { steadyMeter } from '../../bench/steadyRoofline.ts';
import type { Roofline } from '../../src/cost/roofline.ts';

/** A meter that gives these peaks (GFLOP/s) in turn, each with its index as the bandwidth. */
function readings(peaks: number[]) {
  let n = 0;
  const read = (): Roofline => {
    const peak = peaks[n];
    if (peak === undefined) throw new Error('read more often than expected');
    return { peakFlops: peak * 1e9, bandwidth: n++ };
  };
  return { read, count: () => n };
}

const quiet = { floor: 0.75, retakes: 3, pause: () => {} };

describe('steadyMeter', () => {
  it('takes the first reading as it is, having nothing to compare it with', () => {
    const r = readings([109]);
    expect(steadyMeter(r.read, quiet)().peakFlops).toBe(109e9);
    expect(r.count()).toBe(1);
  });

  it('reads once while the peak stays near the best read before', () => {
    const r = readings([210, 195, 160, 205]);
    const meter = steadyMeter(r.read, quiet);
    expect([meter(), meter(), meter(), meter()].map((m) => m.peakFlops / 1e9)).toEqual([210, 195, 160, 205]);
    expect(r.count()).toBe(4);
  });

  it('reads a slow moment again and keeps the reading after it, bandwidth with it', () => {
    const r = readings([206, 109, 204]);
    const retakes: number[] = [];
    let pauses = 0;
    const meter = steadyMeter(r.read, {
      ...quiet,
      pause: () => pauses++,
      onRetake: (low) => retakes.push(low.peakFlops / 1e9),
    });
    meter();
    expect(meter()).toEqual({ peakFlops: 204e9, bandwidth: 2 });
    expect(retakes).toEqual([109]);
    expect(pauses).toBe(1);
  });

  it('holds each reading to the best peak read so far, not to the last one', () => {
    const r = readings([210, 170, 150, 200]);
    const meter = steadyMeter(r.read, quiet);
    meter();
    meter();
    // 150 is over three quarters of 170, under three quarters of 210.
    expect(meter().peakFlops).toBe(200e9);
    expect(r.count()).toBe(4);
  });

  it('stops after its retakes when the host stays slow, keeping the fastest of them', () => {
    const r = readings([200, 100, 120, 110, 105, 190]);
    const meter = steadyMeter(r.read, quiet);
    meter();
    expect(meter().peakFlops).toBe(120e9);
    expect(r.count()).toBe(5);
    // The slow readings do not lower the bar: 190 is near the 200 read first.
    expect(meter().peakFlops).toBe(190e9);
  });
});
