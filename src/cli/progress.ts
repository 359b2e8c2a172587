/**
 * Progress of the long commands (eval, demo, verify) over a known number of units. On a terminal a
 * cli-progress bar is drawn on stderr and cleared at the end, so that the terminal is left as the
 * command alone would leave it; anywhere else (a pipe, a file, a CI log, a test's captured Io) plain
 * lines go to stderr, few enough to read. Never to stdout, which `--json` keeps parseable.
 * `KVPLAN_PROGRESS=0` turns both off.
 */
import { clearLine, cursorTo } from 'node:readline';
import { type Io, processIo } from './io.ts';

/** What a command reports progress of: `kvplan <command>: <done>/<total> <unit>`. */
export interface Work {
  readonly command: string;
  readonly total: number;
  readonly unit: string;
}

export interface Progress {
  /**
   * The command's output while progress shows. On a terminal each write clears the bar and draws
   * it again below, so that the command's lines never run into it.
   */
  readonly io: Io;
  /** `done` units of the total are complete; never less than before. */
  update(done: number): void;
}

/** A stream a bar can be drawn on: stderr, or a test's stand-in. */
export type Terminal = NodeJS.WritableStream & { readonly isTTY?: boolean };

/** Where and when progress shows; tests give a stand-in terminal, environment and clock. */
export interface ProgressSetting {
  /** The stream to draw a bar on when it is a TTY; none for an Io that is not the process's. */
  readonly terminal?: Terminal;
  readonly env?: NodeJS.ProcessEnv;
  /** Milliseconds, for the plain lines' rate and elapsed time. */
  readonly now?: () => number;
}

/** A plain line at most per this share of the work and per this many milliseconds. */
const lineShare = 0.1;
const lineGapMs = 2000;

interface Shown extends Progress {
  stop(): void;
}

function plainLines(io: Io, work: Work, now: () => number): Shown {
  const start = now();
  const step = Math.max(1, Math.ceil(work.total * lineShare));
  let shown = 0;
  let shownAt = start;
  return {
    io,
    update(done) {
      const last = done >= work.total && shown < work.total;
      if (!last && (done - shown < step || now() - shownAt < lineGapMs)) return;
      shown = done;
      shownAt = now();
      const percent = Math.floor((100 * done) / work.total);
      const seconds = ((shownAt - start) / 1000).toFixed(1);
      io.err(`kvplan ${work.command}: ${done}/${work.total} ${work.unit} (${percent}%, ${seconds} s)\n`);
    },
    stop: () => {},
  };
}

async function bar(io: Io, work: Work, terminal: Terminal): Promise<Shown> {
  // Loaded only when a bar is drawn: commands that never draw one do not pay for it at start-up.
  const { MultiBar } = await import('cli-progress');
  // A MultiBar, not a SingleBar: a SingleBar returns the cursor to where it started when it stops,
  // which is lines above once the command has printed below it.
  const bars = new MultiBar({
    stream: terminal,
    format: `kvplan ${work.command} [{bar}] {value}/{total} ${work.unit} | {duration_formatted} | ETA {eta_formatted}`,
    barsize: 30,
    clearOnComplete: true,
    // Redraws an unchanged bar, which a write of the command's own has just cleared.
    forceRedraw: true,
    // Cuts the bar at the terminal's width rather than turning line wrapping off, which a killed
    // process would leave off.
    linewrap: true,
    // Its SIGINT handler would keep Ctrl-C from ending the command.
    gracefulExit: false,
  });
  const current = bars.create(work.total, 0);
  // The work runs between awaits that never yield to a timer: the bar is drawn on every change.
  const around =
    (write: (text: string) => void) =>
    (text: string): void => {
      cursorTo(terminal, 0);
      clearLine(terminal, 0);
      write(text);
      bars.update();
    };
  return {
    io: { out: around(io.out), err: around(io.err) },
    update(done) {
      current.update(done);
      bars.update();
    },
    stop: () => bars.stop(),
  };
}

/** The process's stderr when the command writes through the process's Io. */
const processSetting = (io: Io): ProgressSetting => (io === processIo ? { terminal: process.stderr } : {});

/**
 * Runs `run` with progress over `work` showing, and ends the display however `run` ends. The plain
 * lines come at most once per tenth of the work and per two seconds, and once at the end.
 */
export async function withProgress<T>(
  io: Io,
  work: Work,
  run: (progress: Progress) => Promise<T>,
  setting: ProgressSetting = processSetting(io),
): Promise<T> {
  const off = work.total <= 0 || (setting.env ?? process.env).KVPLAN_PROGRESS === '0';
  const shown: Shown = off
    ? { io, update: () => {}, stop: () => {} }
    : setting.terminal?.isTTY === true
      ? await bar(io, work, setting.terminal)
      : plainLines(io, work, setting.now ?? Date.now);
  try {
    return await run(shown);
  } finally {
    shown.stop();
  }
}
