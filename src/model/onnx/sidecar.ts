/**
 * The sidecar of a foreign ONNX file: `<model>.kvplan.json` next to `<model>.onnx`, a JSON object
 * of kvplan config fields for what a plain export does not record (mask_token_id, ar_shift, name),
 * and optionally any derived field, which must then describe the same model as the graph.
 */
import { existsSync } from 'node:fs';
import { closest } from '../../dsl/suggest.ts';
import { jsonKeys } from '../config.ts';
import { readSmallFile } from '../smallFile.ts';
import type { Derived } from './derive.ts';

/** Fields no graph states: the sidecar is where they come from. */
const given = new Set(['name', 'mask_token_id', 'ar_shift']);

export const sidecarPath = (path: string): string => `${path.replace(/\.onnx$/i, '')}.kvplan.json`;

/** The sidecar's object (empty when there is none); problems with it are added to `problems`. */
export function readSidecar(path: string, problems: string[]): Record<string, unknown> {
  const file = sidecarPath(path);
  if (!existsSync(file)) return {};
  let parsed: unknown;
  try {
    // Bounded: a sidecar is a few fields, and a device or a huge file must not be read to the end.
    parsed = JSON.parse(readSmallFile(file));
  } catch (e) {
    problems.push(`sidecar ${file}: ${(e as Error).message}`);
    return {};
  }
  if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
    return parsed as Record<string, unknown>;
  problems.push(`sidecar ${file}: must be a JSON object of kvplan config fields`);
  return {};
}

/** The config fields of the model: the graph's, with the sidecar's own fields and its agreeing pins. */
export function mergeSidecar(
  path: string,
  derived: Derived | undefined,
  sidecar: Record<string, unknown>,
  problems: string[],
): Record<string, unknown> {
  const file = sidecarPath(path);
  const canonical = new Map<string, string>();
  for (const [field, key] of Object.entries(jsonKeys)) {
    canonical.set(key, key);
    canonical.set(field, key);
  }
  const out: Record<string, unknown> = { ...derived?.fields };
  for (const [raw, value] of Object.entries(sidecar)) {
    const key = canonical.get(raw);
    if (key === undefined) {
      const hit = closest(raw, Object.values(jsonKeys));
      problems.push(`sidecar ${file}: unknown field "${raw}"${hit ? ` (did you mean "${hit}"?)` : ''}`);
    } else if (given.has(key) || derived === undefined) out[key] = value;
    else if (derived.fits(key, value)) out[key] = value;
    else
      problems.push(
        `sidecar ${file} says ${key} = ${JSON.stringify(value)}, but the graph has ${JSON.stringify(derived.fields[key])}`,
      );
  }
  if (out.mask_token_id === undefined)
    problems.push(
      `no mask token id: a plain export does not record it; give it in ${file}, e.g. {"mask_token_id": <id>}`,
    );
  return out;
}
