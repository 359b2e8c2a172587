import { formatDiagnostics } from '../dsl/diagnostics.ts';
import { parsePlanText } from '../dsl/front.ts';
import { printFile } from '../dsl/printer.ts';
import { LineMap } from '../dsl/source.ts';
import { Exit, type Io, readPlanFile, worstExit, writePlanFile } from './io.ts';

export interface FmtCommandOptions {
  readonly write?: boolean;
  readonly check?: boolean;
}

/**
 * `kvplan fmt`: prints the canonical text of each file, or (`--write`) rewrites files that are not
 * canonical, or (`--check`) lists them and fails. A file that does not parse is never written.
 */
export function runFmt(paths: readonly string[], options: FmtCommandOptions, io: Io): number {
  const codes: number[] = [];
  for (const path of paths) {
    const read = readPlanFile(path, io);
    if (!read.ok) {
      codes.push(Exit.usage);
      continue;
    }
    const parsed = parsePlanText(read.file.text);
    const lines = new LineMap(read.file.text);
    for (const t of formatDiagnostics(read.file, parsed.diagnostics, lines)) io.err(`${t}\n`);
    if (!parsed.file) {
      codes.push(Exit.failed);
      continue;
    }
    const canonical = printFile(parsed.file);
    const changed = canonical !== read.file.text;
    if (options.check) {
      if (changed) io.out(`would reformat ${path}\n`);
      codes.push(changed ? Exit.failed : Exit.ok);
    } else if (options.write) {
      if (changed) {
        if (!writePlanFile(path, canonical, io)) {
          codes.push(Exit.failed);
          continue;
        }
        io.err(`formatted ${path}\n`);
      }
      codes.push(Exit.ok);
    } else {
      io.out(canonical);
      codes.push(Exit.ok);
    }
  }
  return worstExit(codes);
}
