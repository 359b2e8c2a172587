import type { Slot } from './manifest.ts';

/**
 * The C side of the slot table every generated unit carries: numbered slots the runner fills
 * (weights, caches, lists, the arena) and the packed copies of the weights GEMMs read (`packed-k16`).
 */
export function slotTable(slots: readonly Slot[], arena: number): string[] {
  const packs = slots.filter((s) => s.packed);
  return [
    `#define NSLOTS ${slots.length}`,
    `#define ARENA ${arena}`,
    'static void *S[NSLOTS];',
    'static float *P[NSLOTS];',
    '',
    '/*',
    ' * Slot i, 64-byte aligned, allocated on first use and poisoned with NaN on every call, so that',
    ' * a runner never sees what an earlier one left. One runner per loaded library at a time.',
    ' */',
    'void *kvp_slot(int i, int64_t bytes) {',
    '  if (i < 0 || i >= NSLOTS) return 0;',
    '  size_t n = ((size_t)bytes + 63) / 64 * 64;',
    '  if (!n) n = 64;',
    '  if (!S[i]) S[i] = aligned_alloc(64, n);',
    '  if (S[i]) memset(S[i], 0xff, n);',
    '  return S[i];',
    '}',
    '',
    '/* Packs the GEMM weights after they are loaded (again for every runner). */',
    'int kvp_prepare(void) {',
    ...packs.map((s) => {
      const [n, k] = s.shape as [number, number];
      return `  if (!P[${s.index}]) P[${s.index}] = aligned_alloc(64, ((size_t)kv_packed_size(${n}, ${k}) * 4 + 63) / 64 * 64);\n  if (!P[${s.index}]) return 0;\n  kv_pack_weight(${n}, ${k}, (const float *)S[${s.index}], P[${s.index}]);`;
    }),
    '  return 1;',
    '}',
    '',
    '/* The packed copy of weight slot i (0 before kvp_prepare, or for a slot that is not a GEMM weight). */',
    'float *kvp_packed(int i) { return i >= 0 && i < NSLOTS ? P[i] : 0; }',
    '',
    'void kvp_release(void) {',
    '  for (int i = 0; i < NSLOTS; i++) { free(S[i]); free(P[i]); S[i] = 0; P[i] = 0; }',
    '}',
    '',
  ];
}
