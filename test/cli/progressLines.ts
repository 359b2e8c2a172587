import { expect } from 'vitest';

/** A plain progress line of src/cli/progress.ts: `kvplan <command>: <done>/<total> <unit> (<p>%, <t> s)`. */
const line = /^kvplan ([a-z-]+): \d+\/(\d+) (\w+) \(\d+%, \d+\.\d s\)$/;

/**
 * Checks that stderr holds nothing but plain progress lines of `command` over `total` units,
 * ending with the complete one; how many come before it depends on the machine's speed.
 */
export function expectOnlyProgress(stderr: string, command: string, total: number, unit: string): void {
  const lines = stderr.split('\n');
  expect(lines.pop(), 'stderr ends with a newline').toBe('');
  expect(lines.length).toBeGreaterThan(0);
  for (const l of lines) {
    const [, of, all, what] = line.exec(l) ?? [];
    expect([of, all, what], l).toEqual([command, String(total), unit]);
  }
  expect(lines.at(-1)).toMatch(`: ${total}/${total} ${unit} (100%, `);
}
