import { explainPlan } from '../runtime/explain.ts';
import { Exit, type Io, worstExit } from './io.ts';
import { loadModelConfig } from './modelConfig.ts';
import { fitsModelDepth, loadPlans } from './plans.ts';

export interface ExplainCommandOptions {
  readonly set?: Map<string, string>;
  readonly config: string;
  readonly ir: boolean;
  readonly cost?: boolean;
  readonly hardware: string;
  readonly batch: number;
  readonly promptLength: number;
  readonly genLength: number;
  readonly remeasure?: boolean;
  readonly json?: boolean;
  /** The options given on the command line (not defaulted). */
  readonly given?: readonly string[];
}

const costOnly = ['hardware', 'batch', 'promptLength', 'genLength', 'remeasure', 'json'] as const;
const flag = (name: string) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

export async function runExplain(
  paths: readonly string[],
  o: ExplainCommandOptions,
  io: Io,
): Promise<number> {
  // An option of the advisor given without --cost would be silently ignored.
  const stray = o.cost ? [] : costOnly.filter((k) => o.given?.includes(k));
  if (stray.length > 0) {
    io.err(`kvplan: ${stray.map(flag).join(', ')} only apply with --cost\n`);
    return Exit.usage;
  }
  const config = loadModelConfig(o.config, io);
  if (!config) return Exit.usage;
  const { plans, codes } = loadPlans(paths, o.set ?? new Map(), io);
  const advisor = o.cost ? await import('./cost.ts') : undefined;
  for (const p of plans) {
    if (!fitsModelDepth(p, config, io)) codes.push(Exit.failed);
    else if (advisor) codes.push(await advisor.printAdvice(p.checked, config, o, io));
    else io.out(explainPlan(p.path, p.checked, config, o.ir));
  }
  return worstExit(codes);
}
