/**
 * The bench's result tables: each figure of dstore beside its baseline, the ratio, the target
 * the issue sets, and the CI guard (a ratio more than 10x off its target means a broken
 * path); and the CPU each process spent per row or operation, beside the baselines'.
 */
import type { CpuPerUnit } from './cpu';

/** How a figure compares: `higher` (rows/s) or `lower` (ms, MiB) is better. */
export type Better = 'higher' | 'lower';

/** One line of the result table. */
export interface Figure {
  name: string;
  unit: string;
  dstore: number;
  /** What it is compared with; undefined when there is none (absolute targets). */
  baseline?: number;
  baselineName?: string;
  better: Better;
  /**
   * Target: on `ratio` (dstore / baseline) when there is a baseline, else on the figure
   * itself. `higher`: figure >= target; `lower`: figure <= target.
   */
  target?: number;
  note?: string;
}

/** dstore / baseline, when there is a baseline. */
export function ratioOf(f: Figure): number | undefined {
  return f.baseline ? f.dstore / f.baseline : undefined;
}

/** The value a target applies to: the ratio when there is a baseline, else the figure. */
function judged(f: Figure): number {
  return ratioOf(f) ?? f.dstore;
}

/** Whether the target is met; undefined when the figure has none. */
export function met(f: Figure): boolean | undefined {
  if (f.target === undefined) return undefined;
  return f.better === 'higher' ? judged(f) >= f.target : judged(f) <= f.target;
}

/** The CI guard: true when the figure misses its target by more than `slack` times. */
export function broken(f: Figure, slack = 10): boolean {
  if (f.target === undefined) return false;
  const v = judged(f);
  return f.better === 'higher' ? v * slack < f.target : v > f.target * slack;
}

function num(v: number | undefined, digits = 0): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  return v.toFixed(Math.abs(v) < 10 && digits === 0 ? 2 : digits);
}

/** Columns as text: those `left` picks left-aligned, the others right-aligned. */
function render(head: string[], rows: string[][], left: (i: number) => boolean): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (left(i) ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function targetText(f: Figure): string {
  if (f.target === undefined) return '';
  return `${f.better === 'higher' ? '>=' : '<='} ${f.target}${f.baseline ? 'x' : ` ${f.unit}`}`;
}

function metText(f: Figure): string {
  const m = met(f);
  return m === undefined ? '' : m ? 'yes' : 'NO';
}

/** The result table as text. */
export function table(figures: Figure[]): string {
  const head = ['figure', 'dstore', 'baseline', 'ratio', 'target', 'met'];
  const rows = figures.map((f) => {
    const ratio = ratioOf(f);
    return [
      `${f.name} (${f.unit})`,
      num(f.dstore),
      f.baseline === undefined ? (f.note ?? '') : `${num(f.baseline)} ${f.baselineName ?? ''}`.trim(),
      ratio === undefined ? '' : `${ratio.toFixed(2)}x`,
      targetText(f),
      metText(f),
    ];
  });
  return render(head, rows, (i) => i === 0 || i === 2);
}

/**
 * CPU of one figure per unit of work (`unit`: per row ingested, read or scanned, or per
 * lookup): each dstore process, and the process of each SQLite baseline.
 */
export interface CpuFigure {
  name: string;
  unit: string;
  dstore: CpuPerUnit;
  /** Baseline (a), one file at synchronous=NORMAL: the process' CPU per unit. */
  baselineA: number;
  /** Baseline (b), one file at dstore's synchronous setting. */
  baselineB: number;
  /** Target on all-dstore / baseline (a). */
  target?: number;
}

/** A CPU figure as a {@link Figure} (all processes vs baseline (a)), for met() and the CI guard. */
export function cpuAsFigure(c: CpuFigure): Figure {
  return {
    name: `CPU ${c.name}`,
    unit: c.unit,
    dstore: c.dstore.all,
    baseline: c.baselineA,
    better: 'lower',
    target: c.target,
  };
}

/** The CPU table as text: µs per unit by process, the baselines, ratio all / (a), target. */
export function cpuTable(figures: CpuFigure[]): string {
  const head = [
    'figure',
    'coord',
    'workers sum',
    'worker max',
    'redis',
    'client',
    'all',
    'SQLite (a)',
    'SQLite (b)',
    'ratio',
    'target',
    'met',
  ];
  const rows = figures.map((c) => {
    const f = cpuAsFigure(c);
    const ratio = ratioOf(f);
    const d = c.dstore;
    return [
      `${c.name} (${c.unit})`,
      num(d.coordinator),
      num(d.workersSum),
      num(d.workerMax),
      num(d.redis),
      num(d.client),
      num(d.all),
      num(c.baselineA),
      num(c.baselineB),
      ratio === undefined ? '' : `${ratio.toFixed(2)}x`,
      targetText(f),
      metText(f),
    ];
  });
  return render(head, rows, (i) => i === 0);
}
