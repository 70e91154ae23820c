/**
 * The nemesis: for each seed, a seeded random schedule of writes, reads and faults against
 * a fresh cluster (4 workers, R = 2, its own Redis with AOF), every answer checked against
 * a model of acknowledged writes. A failure prints the seed, the steps and the replay
 * command. Figures go to a summary table and test/nemesis/results.json.
 *
 *   npm run test:nemesis                                  the CI seeds, about 5 minutes
 *   NEMESIS_SEED=7 NEMESIS_STEPS=40 npm run test:nemesis  replay seed 7's first 40 steps
 *   NEMESIS_SEEDS=1,5,9 | NEMESIS_SEEDS=20 | NEMESIS_SEEDS=100-119 NEMESIS_STEPS=300   run longer
 *   NEMESIS_FAULTS=kill,stop,redis-restart                only these faults (see FAULT_KINDS)
 *   NEMESIS_FORMATS=ndjson,csv                            only these POST encodings (ndjson, json, pretty, csv)
 *   NEMESIS_KEEP_GOING=1                                  go on after a failure: every distinct defect of a seed
 *   NEMESIS_VERBOSE=1                                     print every step as it completes
 */
import 'reflect-metadata';
import { formatFailure, formatSummary, writeResults, type SeedResult } from './report';
import { runSeed } from './runner';
import { FAULT_KINDS, POST_FORMATS, type FaultKind, type PostFormat } from './schedule';

/** The seeds CI runs. */
const DEFAULT_SEEDS = [1, 2, 3, 4];
/** Steps per seed by default: with the seeds above, about 5 minutes on a 2-core machine. */
const DEFAULT_STEPS = 150;

function seeds(): number[] {
  const one = process.env.NEMESIS_SEED;
  if (one) return [parseWhole('NEMESIS_SEED', one)];
  const many = process.env.NEMESIS_SEEDS?.trim();
  if (!many) return DEFAULT_SEEDS;
  if (/^\d+-\d+$/.test(many)) {
    const [a, b] = many.split('-').map(Number);
    return Array.from({ length: b - a + 1 }, (_, i) => a + i);
  }
  if (!many.includes(',')) return Array.from({ length: parseWhole('NEMESIS_SEEDS', many) }, (_, i) => i + 1);
  return many.split(',').map((s) => parseWhole('NEMESIS_SEEDS', s.trim()));
}

function parseWhole(name: string, v: string): number {
  if (!/^\d+$/.test(v))
    throw new Error(
      `${name} must be a whole number (or NEMESIS_SEEDS a list a,b,c, a count, or a range a-b); got ${JSON.stringify(v)}`,
    );
  return Number(v);
}

/** A comma-separated subset of `all` from env var `name`; undefined when unset. */
function subset<T extends string>(name: string, all: readonly T[]): T[] | undefined {
  const v = process.env[name]?.trim();
  if (!v) return undefined;
  const picked = v.split(',').map((s) => s.trim());
  const bad = picked.filter((k) => !(all as readonly string[]).includes(k));
  if (bad.length > 0) throw new Error(`${name}: unknown value(s) ${bad.join(', ')}; use some of ${all.join(', ')}`);
  return picked as T[];
}

describe('nemesis: seeded random faults checked against a model of acknowledged writes', function () {
  const steps = process.env.NEMESIS_STEPS ? parseWhole('NEMESIS_STEPS', process.env.NEMESIS_STEPS) : DEFAULT_STEPS;
  const faultList = subset<FaultKind>('NEMESIS_FAULTS', FAULT_KINDS);
  const faults = faultList && new Set(faultList);
  const formats = subset<PostFormat>('NEMESIS_FORMATS', POST_FORMATS);
  const verbose = process.env.NEMESIS_VERBOSE === '1';
  const results: SeedResult[] = [];

  after(function () {
    if (results.length === 0) return;
    console.log(`\n${formatSummary(results)}\n`);
    console.log(`written to ${writeResults(results)}`);
  });

  for (const seed of seeds()) {
    it(`seed ${seed}: ${steps} steps, every read allowed by the model`, async function () {
      this.timeout(steps * 3_000 + 240_000);
      const r = await runSeed({
        seed,
        steps,
        faults,
        formats,
        keepGoing: process.env.NEMESIS_KEEP_GOING === '1',
        onStep: verbose ? (l) => console.log(`      [seed ${seed}] ${l}`) : undefined,
      });
      results.push(r);
      if (r.failure) throw new Error(formatFailure(r));
      console.log(
        `      seed ${seed}: ${r.stepsRun} steps in ${(r.ms / 1000).toFixed(1)} s, ${r.stats.quiesces} strict checks, ${r.stats.finalRows} rows at the end`,
      );
    });
  }
});
