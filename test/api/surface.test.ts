// The public surface of `import … from 'kvplan'` is exactly what src/index.ts exports
// (docs/api.md, "Stability"). These snapshots pin it: a change to either list is a decision to
// change the public API, made by updating the snapshot on purpose.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import * as api from '../../src/index.ts';

const entry = readFileSync(new URL('../../src/index.ts', import.meta.url), 'utf8');

/** The names src/index.ts exports as types only: `export type { … }` and `type X` items. */
function typeExports(): string[] {
  const names = new Set<string>();
  for (const [, kind, body] of entry.matchAll(/export (type )?\{([^}]*)\}/g))
    for (const item of (body ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const m = /^(type\s+)?(\w+)(?:\s+as\s+(\w+))?$/.exec(item);
      if (!m) throw new Error(`unexpected export item '${item}'`);
      if (kind || m[1]) names.add(m[3] ?? (m[2] as string));
    }
  return [...names].sort();
}

describe('the public API surface', () => {
  test('the entry point lists its exports by name (no export *, no declarations of its own)', () => {
    expect(entry).not.toMatch(/export \*/);
    expect(entry).not.toMatch(/export (const|function|class|let|interface|type \w+ =)/);
  });

  test('runtime exports, sorted, with their typeof', () => {
    const surface = Object.keys(api)
      .sort()
      .map((name) => `${name}: ${typeof (api as Record<string, unknown>)[name]}`);
    expect(surface).toMatchInlineSnapshot(`
      [
        "KvplanError: function",
        "bundledModelFor: function",
        "checkPlan: function",
        "checkPlanFile: function",
        "compilePlan: function",
        "evaluate: function",
        "explainPlan: function",
        "formatDiagnostics: function",
        "generate: function",
        "loadModelConfig: function",
        "openModel: function",
        "prepare: function",
        "verifyPlan: function",
      ]
    `);
  });

  test('type-only exports, sorted', () => {
    // Types leave no trace at run time; they are read from the entry point's export lists.
    const names = typeExports();
    for (const name of names) expect(Object.keys(api)).not.toContain(name);
    expect(names).toMatchInlineSnapshot(`
      [
        "AttentionKind",
        "Backend",
        "BundledModelName",
        "CheckOptions",
        "CheckReport",
        "CheckedPlan",
        "Classification",
        "CompileOptions",
        "CompileReport",
        "CompileStats",
        "ConfigSource",
        "Diagnostic",
        "EvalResult",
        "EvaluateOptions",
        "ExplainOptions",
        "GenerateOptions",
        "GeneratedSequence",
        "Generation",
        "KernelSummary",
        "KvplanErrorCode",
        "Model",
        "ModelConfig",
        "ModelSource",
        "ParamSettings",
        "PlanText",
        "PlanVerdict",
        "Pos",
        "PrepareOptions",
        "PreparedPlan",
        "Problem",
        "ProblemResult",
        "Prompt",
        "PtxArch",
        "RefreshFiring",
        "Severity",
        "SourceFile",
        "Span",
        "StepEvent",
        "Target",
        "TaskName",
        "Tokenizer",
        "VerifyCheck",
        "VerifyOptions",
        "Weights",
      ]
    `);
  });

  test('every export is in the reference of docs/api.md', () => {
    const doc = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
    const reference = doc.slice(doc.indexOf('## Reference'));
    const missing = [...Object.keys(api), ...typeExports()].filter(
      (name) => !reference.includes(`\`${name}`),
    );
    expect(missing).toEqual([]);
  });
});
