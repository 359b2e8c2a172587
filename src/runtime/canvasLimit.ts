/**
 * The largest canvas (prompt plus generated positions) kvplan generates on: beyond it, index lists,
 * caches and the work of a step grow past what any bundled or supported model needs, and a typo
 * (`--gen-length 1e9`) would size terabytes before anything could refuse it.
 */
export const maxCanvasPositions = 16_384;
