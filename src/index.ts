/**
 * kvplan's public library API: `import { … } from 'kvplan'`. Exactly what this file exports is
 * public (docs/api.md); every other module is internal and may change in any release.
 *
 * The pipeline, as functions a program composes:
 *   checkPlan / checkPlanFile -> explainPlan, compilePlan, verifyPlan
 *   openModel -> prepare -> generate (with a per-step callback), evaluate
 * A mistake in a plan is returned as diagnostics; every other bad input throws a KvplanError.
 */

export type { Backend } from './api/backends.ts';
export {
  type CheckOptions,
  type CheckReport,
  checkPlan,
  checkPlanFile,
  formatDiagnostics,
  type ParamSettings,
  type PlanText,
} from './api/check.ts';
export {
  type CompileOptions,
  type CompileReport,
  type CompileStats,
  compilePlan,
  type KernelSummary,
  type PtxArch,
  type Target,
} from './api/compile.ts';
export { type ConfigSource, loadModelConfig } from './api/config.ts';
export { KvplanError, type KvplanErrorCode } from './api/errors.ts';
export {
  type EvalResult,
  type EvaluateOptions,
  evaluate,
  type Problem,
  type ProblemResult,
  type TaskName,
} from './api/evaluate.ts';
export { type ExplainOptions, explainPlan } from './api/explain.ts';
export {
  type GeneratedSequence,
  type GenerateOptions,
  type Generation,
  generate,
  type Prompt,
  type StepEvent,
} from './api/generate.ts';
export {
  type BundledModelName,
  bundledModelFor,
  type Model,
  type ModelSource,
  openModel,
} from './api/model.ts';
export { type PreparedPlan, type PrepareOptions, prepare } from './api/prepare.ts';
export {
  type Check as VerifyCheck,
  type PlanVerdict,
  type RefreshFiring,
  type VerifyOptions,
  verifyPlan,
} from './api/verify.ts';
export type { CheckedPlan, Classification } from './dsl/check.ts';
export type { Diagnostic, Severity } from './dsl/diagnostics.ts';
export type { Pos, SourceFile, Span } from './dsl/source.ts';
export type { AttentionKind, ModelConfig } from './model/config.ts';
export type { Weights } from './model/weights.ts';
export type { Tokenizer } from './runtime/tokenizer.ts';
