/** A position in a plan file: 0-based offset, 1-based line and column. */
export interface Pos {
  readonly offset: number;
  readonly line: number;
  readonly col: number;
}

/** A half-open source range [start, end). Every AST node carries one. */
export interface Span {
  readonly start: Pos;
  readonly end: Pos;
}

export interface SourceFile {
  readonly path: string;
  readonly text: string;
}

/** Converts offsets to line/column pairs in O(log lines). */
export class LineMap {
  private readonly starts: number[] = [0];

  constructor(readonly text: string) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.starts.push(i + 1);
  }

  pos(offset: number): Pos {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.starts[mid] ?? 0) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { offset, line: lo + 1, col: offset - (this.starts[lo] ?? 0) + 1 };
  }

  span(startOffset: number, endOffset: number): Span {
    return { start: this.pos(startOffset), end: this.pos(Math.max(startOffset, endOffset)) };
  }

  lineText(line: number): string {
    const start = this.starts[line - 1] ?? this.text.length;
    const next = this.starts[line];
    const end = next === undefined ? this.text.length : next - 1;
    return this.text.slice(start, end).replace(/\r$/, '');
  }
}

export function joinSpans(a: Span, b: Span): Span {
  return { start: a.start, end: b.end };
}
