import { columnsOf, csvLine, csvRow } from './format';

/**
 * The columns of `fetch --format csv` and `--format table`, chosen so that none is dropped
 * unsaid. When they are known before the first row (a schema's columns, `--fields`, the
 * group-by fields and aggregates) they are those. A schemaless table's are not: its rows
 * are held back, up to {@link CSV_HEADER_ROWS}, and the header is the union of their
 * keys, in the order first seen. A key first seen after that cannot join a header already
 * written: it is counted as late, and fetch names it on stderr at the end.
 */

/** Rows of a schemaless answer held back to find the CSV header (a table shows at most as many). */
export const CSV_HEADER_ROWS = 10_000;

/** A column left out of the output: its name and the row (1-based) where it first appeared. */
export interface LateColumn {
  name: string;
  row: number;
}

/** Turns rows into CSV lines as they arrive; see the module comment for the header. */
export class CsvWriter {
  private columns?: string[];
  private known?: Set<string>;
  private headerSent = false;
  private held: Record<string, unknown>[] = [];
  private rows = 0;
  private readonly late = new Map<string, number>();

  constructor(
    /** The columns when known before the first row; undefined for a schemaless answer. */
    columns: readonly string[] | undefined,
    /** Rows held back to find the header of a schemaless answer. @defaultValue {@link CSV_HEADER_ROWS} */
    private readonly bound = CSV_HEADER_ROWS,
  ) {
    if (columns) this.fix([...new Set(columns)]);
  }

  /** Takes rows; returns the CSV lines (header first, once) that can be written now. */
  push(rows: readonly Record<string, unknown>[]): string[] {
    const out: string[] = [];
    for (const r of rows) {
      this.rows++;
      if (!this.columns) {
        this.held.push(r);
        if (this.held.length >= this.bound) out.push(...this.release());
        continue;
      }
      this.header(out);
      this.check(r);
      out.push(csvRow(this.columns, r));
    }
    return out;
  }

  /** The lines still held back: call once, after the last row. */
  end(): string[] {
    const out: string[] = [];
    if (!this.columns) {
      // A schemaless answer without rows has no columns at all: nothing to write.
      if (this.held.length === 0) return out;
      return this.release();
    }
    this.header(out);
    return out;
  }

  /** Keys of rows that are not in the header, each with the row where it first appeared. */
  lateColumns(): LateColumn[] {
    return [...this.late].map(([name, row]) => ({ name, row }));
  }

  private fix(columns: string[]): void {
    this.columns = columns;
    this.known = new Set(columns);
  }

  private header(out: string[]): void {
    if (this.headerSent || !this.columns) return;
    this.headerSent = true;
    out.push(csvLine(this.columns));
  }

  private check(r: Record<string, unknown>): void {
    for (const k of Object.keys(r)) if (!this.known!.has(k) && !this.late.has(k)) this.late.set(k, this.rows);
  }

  private release(): string[] {
    this.fix(columnsOf(this.held));
    const out: string[] = [];
    this.header(out);
    for (const r of this.held) out.push(csvRow(this.columns!, r));
    this.held = [];
    return out;
  }
}

/**
 * The columns of an aligned table of `rows`: the known ones first (a schema's may have no
 * value in the rows shown, and still appear), then every other key seen, in order.
 */
export function tableColumns(known: readonly string[] | undefined, rows: readonly Record<string, unknown>[]): string[] {
  return [...new Set([...(known ?? []), ...columnsOf(rows as Record<string, unknown>[])])];
}

/** The stderr line naming the columns a CSV left out, or undefined when it left out none. */
export function lateColumnsNote(late: readonly LateColumn[], bound = CSV_HEADER_ROWS): string | undefined {
  if (late.length === 0) return undefined;
  const shown = late.slice(0, 10).map((c) => `${c.name} (first in row ${c.row})`);
  const more = late.length > shown.length ? ` and ${late.length - shown.length} more` : '';
  return (
    `warning: ${late.length} column(s) first seen after the ${bound} rows that set the CSV header are not in it: ${shown.join(', ')}${more}; ` +
    `name every column with --fields, or use --format json or ndjson`
  );
}
