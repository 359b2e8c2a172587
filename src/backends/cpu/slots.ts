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
    '/* The packed copy of a GEMM weight slot: float, or uint16 when D[i] names a 16-bit dtype. */',
    'static void *P[NSLOTS];',
    '/* D: the dtype slot i holds (set by the runner), PD: the one P[i] was packed for; Z: bytes of S[i]. */',
    'static int D[NSLOTS], PD[NSLOTS];',
    'static size_t Z[NSLOTS];',
    '',
    '/*',
    ' * Slot i, 64-byte aligned, allocated on first use (again when a runner needs it larger: a',
    ' * weight in float after one in 16 bits) and poisoned with NaN on every call, so that a runner',
    ' * never sees what an earlier one left. One runner per loaded library at a time.',
    ' */',
    'void *kvp_slot(int i, int64_t bytes) {',
    '  if (i < 0 || i >= NSLOTS) return 0;',
    '  size_t n = ((size_t)bytes + 63) / 64 * 64;',
    '  if (!n) n = 64;',
    '  if (S[i] && Z[i] < n) { free(S[i]); S[i] = 0; }',
    '  if (!S[i]) { S[i] = aligned_alloc(64, n); Z[i] = S[i] ? n : 0; }',
    '  if (S[i]) memset(S[i], 0xff, n);',
    '  return S[i];',
    '}',
    '',
    '/* Slot i holds 16-bit weights of kv_gemm16 dtype d (0: float); set before kvp_prepare_slot. */',
    'void kvp_set_dtype(int i, int d) { if (i >= 0 && i < NSLOTS) D[i] = d; }',
    '',
    '/*',
    ' * Packs GEMM weight slot i once the runner has loaded it (again for every runner), and frees',
    ' * the loaded copy when no other kernel reads it: loading and packing one weight at a time, a',
    ' * GEMM weight is held once, and the loaded copies of the others never coexist. 0 on failure.',
    ' */',
    'int kvp_prepare_slot(int i) {',
    '  switch (i) {',
    ...packs.map((s) => {
      const [n, k] = s.shape as [number, number];
      const i = s.index;
      return [
        `  case ${i}:`,
        `    if (P[${i}] && PD[${i}] != D[${i}]) { free(P[${i}]); P[${i}] = 0; }`,
        `    PD[${i}] = D[${i}];`,
        `    if (D[${i}]) {`,
        `      if (!P[${i}]) P[${i}] = aligned_alloc(64, ((size_t)kv_packed_size16(${n}, ${k}) * 2 + 63) / 64 * 64);`,
        `      if (!P[${i}]) return 0;`,
        `      kv_pack_weight16(${n}, ${k}, (const uint16_t *)S[${i}], D[${i}], (uint16_t *)P[${i}]);`,
        '    } else {',
        `      if (!P[${i}]) P[${i}] = aligned_alloc(64, ((size_t)kv_packed_size(${n}, ${k}) * 4 + 63) / 64 * 64);`,
        `      if (!P[${i}]) return 0;`,
        `      kv_pack_weight(${n}, ${k}, (const float *)S[${i}], (float *)P[${i}]);`,
        '    }',
        ...(s.rowMajor ? [] : [`    free(S[${i}]); S[${i}] = 0; Z[${i}] = 0;`]),
        '    return 1;',
      ].join('\n');
    }),
    '  }',
    '  return 1;',
    '}',
    '',
    '/* The packed copy of weight slot i (0 before kvp_prepare_slot, or for a slot that is not a GEMM weight). */',
    'void *kvp_packed(int i) { return i >= 0 && i < NSLOTS ? P[i] : 0; }',
    '',
    'void kvp_release(void) {',
    '  for (int i = 0; i < NSLOTS; i++) { free(S[i]); free(P[i]); S[i] = 0; P[i] = 0; D[i] = PD[i] = 0; Z[i] = 0; }',
    '}',
    '',
  ];
}
