import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { compileFilter, FilterError, matchesFilter } from '../../common/filter';
import type { QuerySpec } from '../../common/query';
import { compareSql, type SqlValue } from '../../common/sqlite-order';
import type { TableIndexes } from '../../common/indexes';
import { PostMessage, SetupTableMessage } from '../../common/messages';
import { planFetch } from '../../worker/fetch-query';
import { ShardStore } from '../../worker/shard-store';
import { assertOnlyFixedSql } from '../support/sql-check';

/**
 * Property-based tests of the filter compiler with hostile names and values: the SQL
 * never carries user text, and the worker's query path on a real SQLite shard answers
 * exactly what the JS reference evaluator (matchesFilter) says.
 */

// Fixed seed: a failure prints its seed and path and replays the same way.
const SEED = 20240817;

/** Field names meant to break naive SQL or JSON-path building. */
const HOSTILE_NAMES = [
  'a',
  'b',
  'first name',
  "it's",
  'say "hi"',
  "x'); DROP TABLE _tables; --",
  'a" OR 1=1 --',
  '\\',
  '\\"',
  '?',
  '$',
  'a$',
  '*',
  '[0]',
  'null',
  'doc',
  '_id',
  'SELECT',
  'ünïcödé',
  '名前',
  '😀',
  '\u2028',
  ' ',
  'a.b',
  'a.c',
];

const fieldName = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_NAMES) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }) },
);

const SQL_VALUES = [
  "' OR '1'='1",
  '"; DROP TABLE t; --',
  "'); DELETE FROM _chunks; --",
  '%',
  '_',
  '\\',
  '\u0000',
  '$.a',
  'NULL',
  '',
];
const value = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }),
  fc.constantFrom(...SQL_VALUES),
  fc.string({ unit: 'binary', maxLength: 6 }),
  fc.boolean(),
  fc.constant(null),
);

const opValue = fc.oneof(
  value,
  fc.record({ $eq: value }),
  fc.record({ $ne: value }),
  fc.record({ $gt: value }),
  fc.record({ $gte: value }),
  fc.record({ $lt: value }),
  fc.record({ $lte: value }),
  fc.record({ $in: fc.array(value, { maxLength: 4 }) }),
  fc.record({ $nin: fc.array(value, { maxLength: 4 }) }),
  fc.record({ $exists: fc.boolean() }),
  fc.record({ $not: fc.record({ $gt: value }) }),
);

const { filter } = fc.letrec<{ filter: Record<string, unknown>; leaf: Record<string, unknown> }>((tie) => ({
  leaf: fc.dictionary(fieldName, opValue, { minKeys: 0, maxKeys: 2 }),
  filter: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    tie('leaf'),
    fc.record({ $and: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ $or: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ $not: tie('filter') }),
  ),
}));

/** Indexes of the indexed variant: plain, hostile and nested names, one of two fields. */
const INDEXES: TableIndexes = {
  version: 1,
  indexes: {
    ix_a: { fields: ['a'] },
    ix_b: { fields: ['b', 'a'] },
    ix_first: { fields: ['first name'] },
    ix_quote: { fields: ["it's"] },
    ix_nested: { fields: ['a.b'] },
  },
};

/** Every string value inside a filter (not keys). */
function stringsIn(x: unknown, out: string[] = []): string[] {
  if (typeof x === 'string') out.push(x);
  else if (Array.isArray(x)) x.forEach((v) => stringsIn(v, out));
  else if (x && typeof x === 'object') Object.values(x).forEach((v) => stringsIn(v, out));
  return out;
}

describe('filter fuzzing (fast-check)', function () {
  this.timeout(120_000);

  it('compiled SQL carries user names and values only as bound parameters', () => {
    fc.assert(
      fc.property(filter, (f) => {
        let compiled;
        try {
          compiled = compileFilter(f);
        } catch (e) {
          assert.ok(e instanceof FilterError, `compileFilter threw ${String(e)}, not a FilterError`);
          return;
        }
        assertOnlyFixedSql(compiled.sql);
        assert.equal(compiled.sql.split('?').length - 1, compiled.params.length, 'one parameter per placeholder');
        const bound = compiled.params.map(String).join('\u0001');
        // Every string value reaches SQLite as (part of) a parameter; an _id compared with a
        // non-string or an empty $in may compile to a constant, which carries nothing.
        for (const s of stringsIn(f))
          if (compiled.params.length > 0 && s !== '')
            assert.ok(
              bound.includes(s) || bound.includes(JSON.stringify(s).slice(1, -1)),
              `value ${JSON.stringify(s)} not bound`,
            );
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  for (const indexed of [false, true])
    describe(`on a real SQLite shard through the worker query path${indexed ? ', with indexes on some fields' : ''}`, () => {
      let dir: string;
      let store: ShardStore;
      let rows: Record<string, unknown>[];
      let ident: string;

      before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dstore-fuzz-'));
        store = new ShardStore(dir, { sync: 'normal' });
        store.setupTable(
          Object.assign(new SetupTableMessage(), {
            op: 'op1',
            table: 'fz',
            version: 1,
            replyTo: 'x:coord:c:replies',
            ...(indexed ? { indexes: INDEXES } : {}),
          }),
          '1-0',
        );
        const doc = fc.dictionary(
          fieldName,
          fc.oneof(value, fc.dictionary(fc.constantFrom('b', 'c', ' '), value, { maxKeys: 2 })),
          { maxKeys: 5 },
        );
        rows = fc.sample(doc, { seed: SEED, numRuns: 300 }).map((d, i) => {
          const { _id, ...rest } = d;
          void _id;
          return JSON.parse(JSON.stringify({ _id: `r${i}`, ...rest })) as Record<string, unknown>;
        });
        const msg = Object.assign(new PostMessage(), {
          chunk: 'c1',
          post: 'p1',
          table: 'fz',
          replicas: ['w1'],
          replyTo: 'x:coord:c:replies',
          ids: rows.map((r) => r._id as string),
          rows: rows.map((r) => JSON.stringify(r)),
        });
        store.insertChunk(msg, '2-0');
        store.commitPost('op2', 'p1', '3-0');
        if (indexed) {
          assert.equal(store.indexStates().fz.ix_a.state, 'building', 'recorded, built off the event loop');
          assert.deepEqual([...store.indexedPaths('fz')], [], 'no index is used before it is built');
          await store.buildPending();
        }
        ident = store.readerTable('fz')!.ident;
      });

      after(() => {
        store?.close();
        fs.rmSync(dir, { recursive: true, force: true });
      });

      it('answers exactly the rows matchesFilter selects, for any filter', () => {
        let nonTrivial = 0;
        fc.assert(
          fc.property(filter, (f) => {
            let plan;
            try {
              plan = planFetch(ident, { where: f }, undefined, indexed ? store.indexedPaths('fz') : undefined);
            } catch (e) {
              assert.ok(e instanceof FilterError, `planFetch threw ${String(e)}`);
              return;
            }
            const got = (store.reader.prepare(plan.sql).all(...plan.params) as Record<string, unknown>[])
              .map((r) => (JSON.parse(plan.line(r)) as { _id: string })._id)
              .sort();
            const want = rows
              .filter((r) => matchesFilter(f, r))
              .map((r) => r._id as string)
              .sort();
            assert.deepEqual(got, want, `SQLite and matchesFilter disagree on ${JSON.stringify(f)}`);
            if (want.length > 0 && want.length < rows.length) nonTrivial++;
          }),
          { seed: SEED, numRuns: 400 },
        );
        // The generators must produce filters that split the rows, or the test proves little.
        assert.ok(nonTrivial > 40, `only ${nonTrivial} of 400 filters selected some but not all rows`);
      });

      it('pages by keyset: after any row, exactly the rows that follow it in the sort, in order', () => {
        const paths = indexed ? store.indexedPaths('fz') : undefined;
        const run = (q: QuerySpec, chunks?: string[]) => {
          const plan = planFetch(ident, q, chunks, paths);
          return (
            (store.reader.prepare(plan.sql).all(...plan.params) as Record<string, unknown>[])
              .map(plan.line)
              // `[key…, _id]`, a tab, then the row: the keys are what the order is checked on.
              .map((l) => JSON.parse(l.slice(0, l.indexOf('\t'))) as SqlValue[])
          );
        };
        const sortKey = fc.record({
          field: fc.constantFrom('a', 'b', 'first name', "it's", 'a.b', '_id'),
          dir: fc.constantFrom('asc' as const, 'desc' as const),
        });
        fc.assert(
          fc.property(
            fc.array(sortKey, { minLength: 0, maxLength: 2 }),
            fc.nat(),
            fc.integer({ min: 1, max: 40 }),
            fc.oneof(fc.constant(undefined), filter),
            (sort, at, limit, where) => {
              let all: SqlValue[][];
              try {
                all = run({ where, sort, limit: 100_000 });
              } catch (e) {
                assert.ok(e instanceof FilterError, String(e));
                return;
              }
              // SQLite's order is the one the coordinator merges by (common/sqlite-order.ts).
              for (let i = 1; i < all.length; i++) {
                const [x, y] = [all[i - 1], all[i]];
                let c = 0;
                for (let k = 0; k < sort.length && c === 0; k++)
                  c = compareSql(x[k], y[k]) * (sort[k].dir === 'desc' ? -1 : 1);
                if (c === 0) c = compareSql(x[sort.length], y[sort.length]);
                assert.ok(c < 0, `rows ${i - 1} and ${i} out of order for ${JSON.stringify(sort)}`);
              }
              if (all.length === 0) return;
              const p = at % all.length;
              const after = all[p].slice(0, sort.length + 1);
              // Also when the worker answers for some of its chunks only (a chunk list in the SQL).
              const page = run({ where, sort, limit, after }, at % 2 ? ['c1'] : undefined);
              assert.deepEqual(
                page.map((l) => l[sort.length]),
                all.slice(p + 1, p + 1 + limit).map((l) => l[sort.length]),
                `${JSON.stringify({ sort, after, limit, where })}`,
              );
            },
          ),
          { seed: SEED, numRuns: 300 },
        );
      });

      if (indexed)
        it('builds every index and has SQLite use them for an equality, a range, an $in and $exists: false', () => {
          assert.deepEqual(
            Object.fromEntries(Object.entries(store.indexStates().fz).map(([n, st]) => [n, st.state])),
            Object.fromEntries(Object.keys(INDEXES.indexes).map((n) => [n, 'ready'])),
          );
          const paths = store.indexedPaths('fz');
          for (const where of [
            { a: 3 },
            { 'first name': { $gte: 'x' } },
            { "it's": { $in: [1, 'b'] } },
            { b: { $lt: 2 }, a: 1 },
            { a: { $exists: false } },
          ]) {
            // Also when the worker answers for some of its chunks only (a chunk list in the SQL).
            for (const chunks of [undefined, ['c1']]) {
              const plan = planFetch(ident, { where }, chunks, paths);
              const steps = (
                store.reader.prepare(`EXPLAIN QUERY PLAN ${plan.sql}`).all(...plan.params) as { detail: string }[]
              )
                .map((r) => r.detail)
                .join(' | ');
              assert.match(steps, /USING INDEX t_\d+_ix_/, `${JSON.stringify(where)} ${String(chunks)}: ${steps}`);
            }
          }
        });

      if (indexed)
        it('sorts and limits on an indexed field from the index, with the same rows as without it', () => {
          const paths = store.indexedPaths('fz');
          const run = (q: QuerySpec, p?: ReadonlySet<string>) => {
            const plan = planFetch(ident, q, undefined, p);
            return (store.reader.prepare(plan.sql).all(...plan.params) as Record<string, unknown>[]).map(plan.line);
          };
          fc.assert(
            fc.property(
              filter,
              fc.constantFrom('a', 'first name', "it's"),
              fc.constantFrom('asc' as const, 'desc' as const),
              fc.integer({ min: 1, max: 30 }),
              (f, field, dir, limit) => {
                const q: QuerySpec = { where: f, sort: [{ field, dir }], limit };
                let want: string[];
                try {
                  want = run(q);
                } catch (e) {
                  assert.ok(e instanceof FilterError, String(e));
                  return;
                }
                assert.deepEqual(run(q, paths), want, JSON.stringify(q));
              },
            ),
            { seed: SEED, numRuns: 200 },
          );
          const plan = planFetch(ident, { sort: [{ field: 'a', dir: 'desc' }], limit: 10 }, undefined, paths);
          const steps = (
            store.reader.prepare(`EXPLAIN QUERY PLAN ${plan.sql}`).all(...plan.params) as { detail: string }[]
          )
            .map((r) => r.detail)
            .join(' | ');
          assert.match(steps, /USING INDEX t_\d+_ix_ix_a\b/, steps);
        });
    });
});
