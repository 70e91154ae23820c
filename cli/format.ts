/**
 * Text output of the CLI: aligned tables, CSV, human sizes and durations. Pure functions,
 * so the exact output is unit-tested (test/unit/cli-format.test.ts).
 */

/**
 * The text of one value in a table or CSV cell: strings as they are, objects and arrays as JSON, null and undefined
 * empty.
 */
export function cellText(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v);
}

/** Display width, counted in code points (wide East Asian characters count as one). */
function width(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Cuts `s` to at most `max` code points, ending with `…` when anything was cut. */
export function truncate(s: string, max: number): string {
  if (width(s) <= max) return s;
  if (max <= 0) return '';
  return [...s].slice(0, max - 1).join('') + '…';
}

/** Options of {@link renderTable}. */
export interface TableOptions {
  /** Widest line allowed; columns are narrowed (cells end in `…`) to fit. @defaultValue no limit */
  maxWidth?: number;
  /** Spaces between columns. @defaultValue 2 */
  gap?: number;
  /** Narrowest a column is made before columns are dropped from the right. @defaultValue 4 */
  minColumnWidth?: number;
  /** Per column: `right` or `left` alignment; a column not given is right-aligned when all its values are numbers. */
  align?: readonly ('left' | 'right' | undefined)[];
}

/** An aligned table and the columns that did not fit. */
export interface RenderedTable {
  lines: string[];
  /** Names of the columns left out (from the right) because even narrowed they did not fit. */
  hidden: string[];
}

/**
 * Renders rows as an aligned text table: a header line, then one line per row. Cells
 * are single-line (line breaks and tabs become spaces); numeric columns (header included) are
 * right-aligned.
 * When the table is wider than `maxWidth`, the widest columns are narrowed first, all to
 * one common cap; when even that is not enough, columns are dropped from the right.
 */
export function renderTable(columns: string[], rows: unknown[][], opts: TableOptions = {}): RenderedTable {
  const gap = opts.gap ?? 2;
  const minW = opts.minColumnWidth ?? 4;
  const maxWidth = opts.maxWidth ?? Infinity;
  const cells = rows.map((r) => columns.map((_, i) => cellText(r[i]).replace(/[\r\n\t]+/g, ' ')));
  const numeric = columns.map((_, i) =>
    opts.align?.[i] !== undefined
      ? opts.align[i] === 'right'
      : rows.some((r) => r[i] !== null && r[i] !== undefined) &&
        rows.every((r) => r[i] === null || r[i] === undefined || typeof r[i] === 'number'),
  );
  const natural = columns.map((c, i) => Math.max(width(c), ...cells.map((r) => width(r[i]))));

  const narrowest = (n: number) => natural.slice(0, n).reduce((a, w) => a + Math.min(w, minW), 0) + (n - 1) * gap;
  let shown = columns.length;
  while (shown > 1 && narrowest(shown) > maxWidth) shown--;
  const widths = fitWidths(natural.slice(0, shown), maxWidth - (shown - 1) * gap);

  const line = (vals: string[]) =>
    vals
      .slice(0, shown)
      .map((v, i) => {
        const t = truncate(v, widths[i]);
        const pad = ' '.repeat(widths[i] - width(t));
        return numeric[i] ? pad + t : t + pad;
      })
      .join(' '.repeat(gap))
      .trimEnd();
  return {
    lines: [line(columns), ...cells.map(line)],
    hidden: columns.slice(shown),
  };
}

/**
 * Column widths whose sum is at most `budget` (when it can be): every column wider than
 * the largest cap that fits is cut to that cap; narrower columns keep their width.
 */
function fitWidths(natural: number[], budget: number): number[] {
  const total = natural.reduce((a, b) => a + b, 0);
  if (total <= budget) return natural;
  let lo = 1;
  let hi = Math.max(1, ...natural);
  const sumAt = (cap: number) => natural.reduce((a, w) => a + Math.min(w, cap), 0);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (sumAt(mid) <= budget) lo = mid;
    else hi = mid - 1;
  }
  return natural.map((w) => Math.min(w, lo));
}

/**
 * The columns of a set of rows: every key, in the order first seen.
 */
export function columnsOf(rows: Record<string, unknown>[]): string[] {
  const seen = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) seen.add(k);
  return [...seen];
}

/** Renders objects as a table of {@link columnsOf} their keys. */
export function renderObjects(rows: Record<string, unknown>[], opts: TableOptions = {}): RenderedTable {
  const columns = columnsOf(rows);
  return renderTable(
    columns,
    rows.map((r) => columns.map((c) => r[c])),
    opts,
  );
}

/** One CSV field: quoted (with `"` doubled) when it holds a comma, quote, line break or edge spaces. */
export function csvField(v: unknown): string {
  const s = cellText(v);
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One CSV line (RFC 4180, without the line ending) of `values`. */
export function csvLine(values: unknown[]): string {
  return values.map(csvField).join(',');
}

/** The CSV line of `row` for the header `columns`: keys not in the header are left out, missing ones are empty. */
export function csvRow(columns: string[], row: Record<string, unknown>): string {
  return csvLine(columns.map((c) => row[c]));
}

/** `n` and the noun, plural unless n is 1: `1 row`, `2 rows`, `0 rows`. */
export function counted(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** Human size: `512 B`, `1.5 kB`, `12.3 MB`, `4.00 GB` (powers of 1000, like the MB/s of post). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '-';
  if (n < 1000) return `${Math.round(n)} B`;
  const units = ['kB', 'MB', 'GB', 'TB', 'PB'];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ${units[u]}`;
}

/** Human duration: `450ms`, `3.2s`, `4m 05s`, `2h 03m`, `3d 04h`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
  const two = (n: number) => String(Math.floor(n)).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m ${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${two((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${two((s % 86400) / 3600)}h`;
}

/** A whole number with thousands separators (`1,234,567`), for progress and tables meant for people. */
export function formatCount(n: number): string {
  return Math.round(n)
    .toString()
    .replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Local date and time to the second: `2024-05-01 13:04:05`. */
export function formatTime(ms: number): string {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return '-';
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** The tail of an UPDATE/DELETE line when some workers have the change queued but not applied. */
export function pendingNote(workers: string[] | undefined): string {
  if (!workers || workers.length === 0) return '';
  return ` (queued for ${workers.join(', ')}, not live now: applied before they answer reads again; rows only they hold are not counted)`;
}
