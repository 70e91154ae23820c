/** The figures of each fault, as one aligned table and as test/faults/results.json. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { projectRoot } from '../support/processes';

export interface FaultResult {
  fault: string;
  /** Rows of batches whose POST answered 200. */
  ackedRows: number;
  lost: number;
  duplicated: number;
  wrong: number;
  /** ms from the fault to the first complete, exact full read; null if none was seen. */
  recoverMs: number | null;
  /** POST attempts that did not answer 200. */
  failedPosts: number;
  /** Batches never acked whose retry got 409 "duplicate _id" (excluded from lost and duplicated). */
  ambiguous: number;
  /** Rows of ambiguous batches the final read shows. */
  ambiguousRowsVisible: number;
  /** Ambiguous batches of which only some rows are visible (a POST must be stored whole or not at all): must be 0. */
  ambiguousPartial: number;
  /**
   * Ambiguous batches none of whose rows is visible although retries kept getting 409: their `_id`s can never be
   * stored.
   */
  ambiguousStuck: number;
  /** Visible rows of batches that were never acknowledged (failed/rejected); included in `duplicated`. */
  phantom: number;
  batches: { acked: number; failed: number; ambiguous: number; rejected: number; pending: number };
  /** Wall time of the whole fault run, setup and teardown included. */
  elapsedMs: number;
  notes: string[];
  /** Set when the run could not complete (an exception, a timeout). */
  error?: string;
}

const COLUMNS: [string, (r: FaultResult) => string][] = [
  ['fault', (r) => r.fault],
  ['acked rows', (r) => String(r.ackedRows)],
  ['lost', (r) => String(r.lost)],
  ['duplicated', (r) => String(r.duplicated)],
  ['wrong', (r) => String(r.wrong)],
  ['recover ms', (r) => (r.recoverMs === null ? 'never' : String(r.recoverMs))],
  ['failed POSTs', (r) => String(r.failedPosts)],
  ['ambiguous', (r) => String(r.ambiguous)],
];

/** One aligned text table, a header line, a rule, one line per fault (and the error, if any). */
export function formatTable(results: FaultResult[]): string {
  const cells = results.map((r) => COLUMNS.map(([, f]) => f(r)));
  const widths = COLUMNS.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  const out = [line(COLUMNS.map(([h]) => h)), widths.map((w) => '-'.repeat(w)).join('  ')];
  results.forEach((r, i) => {
    out.push(line(cells[i]) + (r.error ? '  ERROR' : ''));
  });
  return out.join('\n');
}

/** The notes and errors of every fault, one block each. */
export function formatNotes(results: FaultResult[]): string {
  return results
    .map((r) =>
      [
        `${r.fault} (${(r.elapsedMs / 1000).toFixed(1)} s):`,
        ...(r.error ? [`  ERROR: ${r.error}`] : []),
        ...r.notes.map((n) => `  - ${n}`),
      ].join('\n'),
    )
    .join('\n');
}

/** Writes `{generatedAt, results}` to test/faults/results.json under the project root; returns the path. */
export function writeResults(
  results: FaultResult[],
  file = path.join(projectRoot(), 'test', 'faults', 'results.json'),
): string {
  fs.writeFileSync(file, JSON.stringify({ generatedAt: new Date().toISOString(), results }, null, 2) + '\n');
  return file;
}
