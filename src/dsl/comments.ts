import type { Comment, Plan, PlanFile, Stmt } from './ast.ts';

/**
 * Attaches comments to the plan or statement they document so that the printer can keep them:
 * a comment on the line where a statement ends trails it; any other comment leads the next plan or
 * statement (or, with none left in the plan, stays inside it before the closing brace).
 */
export function attachComments(file: PlanFile, comments: readonly Comment[]): PlanFile {
  let i = 0;
  const takeBefore = (offset: number): Comment[] => {
    const out: Comment[] = [];
    while (i < comments.length && (comments[i]?.span.start.offset ?? 0) < offset)
      out.push(comments[i++] as Comment);
    return out;
  };
  const takeTrailing = (stmt: Stmt): Comment | undefined => {
    const c = comments[i];
    if (c && c.span.start.line === stmt.span.end.line && c.span.start.offset >= stmt.span.end.offset) {
      i++;
      return c;
    }
    return undefined;
  };
  const plans = file.plans.map((plan): Plan => {
    const leading = takeBefore(plan.span.start.offset);
    const body = plan.body.map((stmt): Stmt => {
      const stmtLeading = takeBefore(stmt.span.start.offset);
      const trailing = takeTrailing(stmt);
      return { ...stmt, leading: stmtLeading, trailing };
    });
    const inner = takeBefore(plan.span.end.offset);
    return { ...plan, leading, body, inner };
  });
  return { plans, trailing: comments.slice(i) };
}
