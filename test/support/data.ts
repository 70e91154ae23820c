import type { Row } from './driver';

/** A small deterministic PRNG (mulberry32) so generated data sets repeat run to run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CITIES = ['Lyon', 'Oslo', 'Kyoto', 'Lima', 'Accra', 'Perth'];

/** `n` varied rows: strings, integers, reals, booleans, a nested object, some missing fields. */
export function makeRows(n: number, seed = 1, idPrefix = 'r'): Row[] {
  const r = rng(seed);
  const rows: Row[] = [];
  for (let i = 0; i < n; i++) {
    const row: Row = {
      _id: `${idPrefix}${String(i).padStart(7, '0')}`,
      city: CITIES[Math.floor(r() * CITIES.length)],
      n: Math.floor(r() * 1000),
      score: Math.round(r() * 10000) / 100,
      ok: r() < 0.5,
      meta: { depth: Math.floor(r() * 5), tag: r() < 0.3 ? null : `t${Math.floor(r() * 10)}` },
    };
    if (r() < 0.1) delete row.score;
    if (r() < 0.05) row.n = String(row.n) as unknown as number; // a numeric string: never equal to a number
    rows.push(row);
  }
  return rows;
}

/** Splits rows into chunks of `size`. */
export function chunked<T>(rows: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < rows.length; i += size) out.push(rows.slice(i, i + size));
  return out;
}

/** Counts of each JSON text in `rows`: compare multisets with deepEqual. */
export function multiset(rows: unknown[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of rows) {
    const k = canonical(r);
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return new Map([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** JSON with object keys sorted, so key order does not matter. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Rows lost and rows duplicated, comparing what came back with what was expected (by `_id`). */
export function lossAndDuplicates(
  expected: Row[],
  got: { _id?: unknown }[],
): { lost: number; duplicated: number; wrong: number } {
  const want = new Map(expected.map((r) => [r._id, canonical(r)]));
  const seen = new Map<unknown, number>();
  let wrong = 0;
  for (const g of got) {
    seen.set(g._id, (seen.get(g._id) ?? 0) + 1);
    const w = want.get(g._id as string);
    if (w !== undefined && w !== canonical(g)) wrong++;
  }
  let lost = 0;
  let duplicated = 0;
  for (const id of want.keys()) if (!seen.has(id)) lost++;
  for (const [id, n] of seen) {
    if (n > 1) duplicated += n - 1;
    if (!want.has(id as string)) duplicated++;
  }
  return { lost, duplicated, wrong };
}
