// What the page writes into `#result`, shared with test/web/browser.test.ts (no DOM types here).

/** The machine-readable outcome, written as JSON into `#result`. */
export interface PageResult {
  /** Compiled, WGSL valid, and (where an adapter exists) ran within the float32 budget. */
  ok: boolean;
  plan?: string;
  exact?: boolean;
  compiled: boolean;
  shaders: number;
  /** null: no device to validate on (the test then validates the same WGSL with Dawn in Node). */
  wgslValid: boolean | null;
  wgslErrors: string[];
  /** `navigator.gpu` adapter description, or null with `noAdapter` saying why. */
  adapter: string | null;
  noAdapter?: string;
  ran: boolean;
  steps: number;
  /** Steps held to the float32 budget: every step of an exact plan, the refresh steps otherwise. */
  checkedSteps: number;
  /** Max |GPU logit − golden logit| over the checked steps. */
  maxDeviation: number | null;
  /** The same over every step (cached steps of approximate plans deviate by design). */
  maxDeviationAll: number | null;
  /** Max |golden logit| over the checked steps. */
  scale: number | null;
  /** Max deviation of the eager float32 reference interpreter over the checked steps. */
  eagerError: number | null;
  withinBudget: boolean | null;
  msPerStep: number | null;
  error?: string;
}
