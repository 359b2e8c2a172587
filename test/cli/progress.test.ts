// The long commands' progress (src/cli/progress.ts) through its injectable terminal, environment
// and clock: plain lines off a terminal, a cli-progress bar on one, nothing with KVPLAN_PROGRESS=0.
import { describe, expect, test, vi } from 'vitest';
import type { Io } from '../../src/cli/io.ts';
import { type ProgressSetting, type Terminal, withProgress } from '../../src/cli/progress.ts';

// Counts the loads of cli-progress: only drawing a bar may load it.
const loads = vi.hoisted(() => ({ count: 0 }));
vi.mock('cli-progress', async (importOriginal) => {
  loads.count++;
  return importOriginal();
});

/** One log of everything written, in order: the command's stdout and stderr, and the terminal. */
function recorder() {
  const log: [where: 'out' | 'err' | 'tty', text: string][] = [];
  const io: Io = {
    out: (text) => log.push(['out', text]),
    err: (text) => log.push(['err', text]),
  };
  const screen = {
    isTTY: true,
    columns: 120,
    write(text: string, done?: () => void) {
      log.push(['tty', text]);
      done?.();
      return true;
    },
  };
  const text = (where: 'out' | 'err' | 'tty') =>
    log
      .filter(([w]) => w === where)
      .map(([, t]) => t)
      .join('');
  return { log, io, terminal: screen as unknown as Terminal, text };
}

/** Reports `total` units one at a time, the clock moving `msEach` per unit. */
async function steadily(io: Io, total: number, msEach: number, setting: ProgressSetting) {
  let t = 0;
  await withProgress(
    io,
    { command: 'eval', total, unit: 'problems' },
    async (p) => {
      for (let done = 1; done <= total; done++) {
        t += msEach;
        p.update(done);
      }
    },
    { env: {}, now: () => t, ...setting },
  );
}

/** Work that finishes one case of four, then throws. */
const failAfterOne = (io: Io, setting: ProgressSetting) =>
  withProgress(
    io,
    { command: 'verify', total: 4, unit: 'cases' },
    async (p) => {
      p.update(1);
      throw new Error('stopped');
    },
    setting,
  );

describe('progress off a terminal', () => {
  test('a line per tenth of the work at most, and the last, on stderr only', async () => {
    const r = recorder();
    await steadily(r.io, 50, 1000, {});
    expect(r.text('out')).toBe('');
    expect(r.text('tty')).toBe('');
    expect(r.text('err')).toBe(
      [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
        .map((d) => `kvplan eval: ${d}/50 problems (${2 * d}%, ${d}.0 s)\n`)
        .join(''),
    );
  });

  test('never more than one line per two seconds, however many units finish', async () => {
    const fast = recorder();
    await steadily(fast.io, 1000, 1, {});
    // 1000 units in one second: only the last line.
    expect(fast.text('err')).toBe('kvplan eval: 1000/1000 problems (100%, 1.0 s)\n');
    const slow = recorder();
    await steadily(slow.io, 1000, 60_000, {});
    // A minute a unit: still one line per tenth.
    expect(slow.text('err').split('\n').filter(Boolean)).toHaveLength(10);
  });

  test('KVPLAN_PROGRESS=0 writes nothing', async () => {
    const r = recorder();
    await steadily(r.io, 50, 1000, { env: { KVPLAN_PROGRESS: '0' }, terminal: r.terminal });
    expect(r.log).toEqual([]);
  });

  test('work that stops short of the total ends without a last line', async () => {
    const r = recorder();
    await expect(failAfterOne(r.io, { env: {}, now: () => 0 })).rejects.toThrow('stopped');
    expect(r.log).toEqual([]);
  });

  test('plain lines never load cli-progress', () => {
    expect(loads.count).toBe(0);
  });
});

describe('progress on a terminal', () => {
  test('a cli-progress bar on the terminal, cleared at the end; nothing on stdout or stderr', async () => {
    const r = recorder();
    await steadily(r.io, 4, 1000, { terminal: r.terminal });
    expect(loads.count).toBe(1);
    expect(r.text('out')).toBe('');
    expect(r.text('err')).toBe('');
    const tty = r.text('tty');
    expect(tty).toMatch(/kvplan eval \[=+-*\] 2\/4 problems \|/);
    expect(tty).toContain('kvplan eval [==============================] 4/4 problems |');
    // cli-progress clears from the bar's line down when it stops: the terminal is left as it was.
    expect(tty.endsWith('\x1b[0J')).toBe(true);
  });

  test("the command's own lines go around the bar: cleared before, drawn again after", async () => {
    const r = recorder();
    await withProgress(
      r.io,
      { command: 'demo', total: 3, unit: 'runs' },
      async (p) => {
        p.update(1);
        p.io.out('baseline: 1/1 correct\n');
        p.io.err('kvplan: warning: something\n');
        p.update(3);
      },
      { terminal: r.terminal, env: {} },
    );
    for (const where of ['out', 'err'] as const) {
      const at = r.log.findIndex(([w]) => w === where);
      expect(r.log[at - 1]).toEqual(['tty', '\x1b[2K']);
      expect(r.log.slice(at + 1).find(([w, t]) => w === 'tty' && t.includes('1/3 runs'))).toBeDefined();
    }
    expect(r.text('out')).toBe('baseline: 1/1 correct\n');
    expect(r.text('err')).toBe('kvplan: warning: something\n');
  });

  test('work that throws takes the bar down', async () => {
    const r = recorder();
    await expect(failAfterOne(r.io, { terminal: r.terminal, env: {} })).rejects.toThrow('stopped');
    expect(r.text('tty').endsWith('\x1b[0J')).toBe(true);
  });
});
