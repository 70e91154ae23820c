/**
 * The figures of a nemesis run: per-seed results, the summary tables, the failure report and
 * test/nemesis/results.json.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { projectRoot } from '../support/processes';
import type { Problem, ProblemKind } from './checker';

/** Counters of one seed. */
export interface Stats {
  /** Faults and heals applied, by kind. */
  faults: Record<string, number>;
  /** Faults that no longer fitted the cluster (or a wipe on a cluster that would not settle). */
  skippedFaults: number;
  posts: Record<string, number>;
  updates: number;
  deletes: number;
  writes: { acked: number; indeterminate: number; rejected: number; refused: number };
  reads: {
    sent: number;
    /** 200 answers checked, by read kind. */
    checked: Record<string, number>;
    exact: number;
    /** 200 answers ending with a `_partial` line. */
    partial: number;
    /** 200 answers ending with an `_error` line. */
    errorLine: number;
    /** 503 / 504 answers. */
    unavailable: number;
    /** Connection refused, reset or timed out. */
    cut: number;
    otherStatus: number;
  };
  problems: Partial<Record<ProblemKind, number>>;
  quiesces: number;
  /** Rows in the table at the last strict check. */
  finalRows: number;
  /** Chunks whose replicas were compared, over all quiesces. */
  chunksChecked: number;
  /** POSTs answered 200 with `underReplicated` > 0. */
  underReplicatedPosts: number;
  /** Entries in the dead-letter stream at the end. */
  deadLetters: number;
  /** Entries of the under-replicated set naming chunks that no longer exist, at the end. */
  staleUnderReplicated: number;
}

/** What one seed did and found. */
export interface SeedResult {
  seed: number;
  steps: number;
  stepsRun: number;
  ms: number;
  stats: Stats;
  problems: (Problem & { step: number })[];
  notes: string[];
  failure?: { step: number; replaySteps: number; log: string[] };
}

/** Zeroed counters. */
export function emptyStats(): Stats {
  return {
    faults: {},
    skippedFaults: 0,
    posts: {},
    updates: 0,
    deletes: 0,
    writes: { acked: 0, indeterminate: 0, rejected: 0, refused: 0 },
    reads: { sent: 0, checked: {}, exact: 0, partial: 0, errorLine: 0, unavailable: 0, cut: 0, otherStatus: 0 },
    problems: {},
    quiesces: 0,
    finalRows: 0,
    chunksChecked: 0,
    underReplicatedPosts: 0,
    deadLetters: 0,
    staleUnderReplicated: 0,
  };
}

/** The command that replays a failure (with the NEMESIS_FAULTS / NEMESIS_FORMATS of the run, when set). */
export function replayCommand(r: SeedResult): string {
  const filters = ['NEMESIS_FAULTS', 'NEMESIS_FORMATS']
    .filter((k) => process.env[k])
    .map((k) => `${k}=${process.env[k]} `);
  return `${filters.join('')}NEMESIS_SEED=${r.seed} NEMESIS_STEPS=${r.failure?.replaySteps ?? r.steps} npm run test:nemesis`;
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (c: string[]) => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const sum = (xs: Record<string, number>) => Object.values(xs).reduce((a, b) => a + b, 0);
const n = (r: SeedResult, k: ProblemKind) => r.stats.problems[k] ?? 0;

/** The summary: one line per seed, then faults and reads by kind over all seeds. */
export function formatSummary(results: SeedResult[]): string {
  const perSeed = table(
    [
      'seed',
      'steps',
      's',
      'faults',
      'writes ok/?/no',
      'reads checked',
      'exact',
      '503',
      'partial',
      'lost',
      'dup',
      'wrong',
      'resurr.',
      'other',
      'result',
    ],
    results.map((r) => {
      const s = r.stats;
      const other =
        sum(s.problems as Record<string, number>) -
        n(r, 'lost') -
        n(r, 'duplicate') -
        n(r, 'wrong') -
        n(r, 'resurrected');
      return [
        String(r.seed),
        `${r.stepsRun}/${r.steps}`,
        (r.ms / 1000).toFixed(0),
        String(sum(s.faults)),
        `${s.writes.acked}/${s.writes.indeterminate}/${s.writes.rejected + s.writes.refused}`,
        String(sum(s.reads.checked)),
        String(s.reads.exact),
        String(s.reads.unavailable),
        String(s.reads.partial + s.reads.errorLine),
        String(n(r, 'lost')),
        String(n(r, 'duplicate')),
        String(n(r, 'wrong')),
        String(n(r, 'resurrected')),
        String(other),
        r.failure ? `FAIL at step ${r.failure.step}` : 'ok',
      ];
    }),
  );
  const total = (pick: (r: SeedResult) => Record<string, number>) => {
    const m = new Map<string, number>();
    for (const r of results) for (const [k, v] of Object.entries(pick(r))) m.set(k, (m.get(k) ?? 0) + v);
    return (
      [...m]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none'
    );
  };
  const reads = results.reduce((a, r) => a + r.stats.reads.sent, 0);
  const cut = results.reduce((a, r) => a + r.stats.reads.cut, 0);
  const skipped = results.reduce((a, r) => a + r.stats.skippedFaults, 0);
  return [
    perSeed,
    '',
    `faults and heals: ${total((r) => r.stats.faults)}${skipped ? ` (${skipped} skipped)` : ''}`,
    `reads checked by kind: ${total((r) => r.stats.reads.checked)} (of ${reads} sent; ${cut} cut or refused)`,
    `POSTs by format: ${total((r) => r.stats.posts)}`,
    `problems: ${total((r) => r.stats.problems as Record<string, number>)}`,
    `dead-lettered entries: ${results.map((r) => r.stats.deadLetters).join(', ')}; under-replicated entries naming chunks that no longer exist: ${results.map((r) => r.stats.staleUnderReplicated).join(', ')} (per seed)`,
    'writes ok/?/no = acknowledged / indeterminate (5xx, cut) / rejected or refused; 503 = answers saying the read is not exact (503/504), partial = _partial or _error lines',
  ].join('\n');
}

/** The failure report of one seed: what went wrong, the steps so far and the replay command. */
export function formatFailure(r: SeedResult): string {
  const f = r.failure!;
  // Grouped by kind, first seen first: a short read can report hundreds of lost rows.
  const byKind = new Map<string, (Problem & { step: number })[]>();
  for (const p of r.problems) byKind.set(p.kind, [...(byKind.get(p.kind) ?? []), p]);
  const shown: string[] = [];
  for (const [kind, ps] of byKind) {
    shown.push(`  ${kind}: ${ps.length}${ps.length > 4 ? ' (first 4)' : ''}`);
    for (const p of ps.slice(0, 4)) shown.push(`    step ${p.step}: ${p.detail}`);
  }
  return [
    `nemesis seed ${r.seed} failed at step ${f.step} (${r.problems.length} problem(s)):`,
    ...shown,
    ...r.notes.map((x) => `  note: ${x}`),
    `steps (seed ${r.seed}):`,
    ...f.log.map((l) => `  ${l}`),
    `replay: ${replayCommand(r)}`,
  ].join('\n');
}

/** Writes `{generatedAt, results}` to test/nemesis/results.json under the project root; returns the path. */
export function writeResults(
  results: SeedResult[],
  file = path.join(projectRoot(), 'test', 'nemesis', 'results.json'),
): string {
  const slim = results.map((r) => ({
    ...r,
    problems: r.problems.slice(0, 50),
    replay: r.failure ? replayCommand(r) : undefined,
  }));
  fs.writeFileSync(file, JSON.stringify({ generatedAt: new Date().toISOString(), results: slim }, null, 2) + '\n');
  return file;
}
