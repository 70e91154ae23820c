import { strict as assert } from 'node:assert';
import Database from 'better-sqlite3';
import type { FetchRespMessage, OpAckMessage } from '../../common/messages';
import type { AggregateSpec, SortSpec } from '../../common/query';
import { compareSql, toSqlValue, type SqlValue } from '../../common/sqlite-order';
import { combineAggregates, SortedInput } from '../../coordinator/fetch-merger';
import { countOncePerChunk } from '../../coordinator/ops';
import { rng } from '../support/data';

type Row = Record<string, unknown>;
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

// ---------------------------------------------------------------------------
// A reference written independently of common/sqlite-order: SQLite orders NULL, then
// numbers, then text by its UTF-8 bytes.

function refOrder(a: unknown, b: unknown): number {
  const rank = (v: unknown) => (v === null ? 0 : typeof v === 'number' ? 1 : 2);
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'string' && typeof b === 'string') {
    const x = new TextEncoder().encode(a);
    const y = new TextEncoder().encode(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  }
  return 0;
}

/** The SQLite value of a row field as the workers' json_extract sees it, or undefined when absent. */
const fieldOf = (row: Row, f: string): unknown => (f in row ? row[f] : undefined);
const isNum = (v: unknown): v is number => typeof v === 'number';
const isOrderable = (v: unknown): v is number | string => typeof v === 'number' || typeof v === 'string';

/** One aggregate over some rows, as its partial (avg as [sum, count]) would be on a worker. */
function partial(spec: AggregateSpec, rows: Row[]): unknown {
  const vals = spec.field === undefined ? [] : rows.map((r) => fieldOf(r, spec.field!));
  switch (spec.op) {
    case 'count':
      return spec.field === undefined ? rows.length : vals.filter((v) => v !== undefined && v !== null).length;
    case 'sum': {
      const nums = vals.filter(isNum);
      return nums.length ? nums.reduce((a, b) => a + b, 0) : null;
    }
    case 'avg': {
      const nums = vals.filter(isNum);
      return [nums.length ? nums.reduce((a, b) => a + b, 0) : null, nums.length];
    }
    case 'min':
    case 'max': {
      const os = vals.filter(isOrderable);
      if (os.length === 0) return null;
      return os.reduce((a, b) => ((spec.op === 'min' ? refOrder(b, a) < 0 : refOrder(b, a) > 0) ? b : a));
    }
  }
}

/** The final value of one aggregate over the whole data set. */
function finalValue(spec: AggregateSpec, rows: Row[]): unknown {
  const p = partial(spec, rows);
  if (spec.op !== 'avg') return p;
  const [sum, count] = p as [number | null, number];
  return count === 0 ? null : sum! / count;
}

function groupsOf(rows: Row[], groupBy: string[]): Map<string, { g: unknown[]; rows: Row[] }> {
  const out = new Map<string, { g: unknown[]; rows: Row[] }>();
  for (const r of rows) {
    const g = groupBy.map((f) => fieldOf(r, f) ?? null);
    const k = JSON.stringify(g);
    if (!out.has(k)) out.set(k, { g, rows: [] });
    out.get(k)!.rows.push(r);
  }
  return out;
}

/** The FETCH_RESP lines one worker sends for its shard (one line even for no rows when ungrouped, as SQL does). */
function workerLines(shard: Row[], groupBy: string[], aggs: AggregateSpec[]): string[] {
  const groups = groupsOf(shard, groupBy);
  if (groupBy.length === 0 && groups.size === 0) groups.set('[]', { g: [], rows: [] });
  return [...groups.values()].map(({ g, rows }) => JSON.stringify({ g, a: aggs.map((s) => partial(s, rows)) }));
}

function resp(worker: string, seq: number, rows: string[], done: boolean): FetchRespMessage {
  return {
    type: 'FETCH_RESP',
    req: '01REQ',
    worker,
    seq,
    mode: 'agg',
    count: rows.length,
    rows: rows.join('\n'),
    done,
  } as unknown as FetchRespMessage;
}

/** The batches of several workers, each cut into random batches, interleaved at random. */
function batches(r: () => number, shards: Row[][], groupBy: string[], aggs: AggregateSpec[]): FetchRespMessage[] {
  const queues = shards.map((shard, w) => {
    const lines = workerLines(shard, groupBy, aggs);
    const out: FetchRespMessage[] = [];
    let seq = 0;
    for (let i = 0; i < lines.length || out.length === 0;) {
      const n = 1 + Math.floor(r() * 3);
      const part = lines.slice(i, i + n);
      i += n;
      out.push(resp(`w${w}`, seq++, part, i >= lines.length));
    }
    return out;
  });
  const parts: FetchRespMessage[] = [];
  while (queues.some((q) => q.length))
    parts.push(
      pick(
        r,
        queues.filter((q) => q.length),
      ).shift()!,
    );
  return parts;
}

function outName(a: AggregateSpec): string {
  return a.as ?? (a.field === undefined ? 'count' : `${a.op}_${a.field}`);
}

/** The answer computed straight from the whole data set. */
function expected(
  rows: Row[],
  groupBy: string[],
  aggs: AggregateSpec[],
  sort: SortSpec[] | undefined,
  limit: number | undefined,
): Row[] {
  const groups = groupsOf(rows, groupBy);
  if (groupBy.length === 0 && groups.size === 0) groups.set('[]', { g: [], rows: [] });
  const out = [...groups.values()].map(({ g, rows: rs }) => {
    const o: Row = {};
    groupBy.forEach((f, i) => (o[f] = g[i]));
    for (const a of aggs) o[outName(a)] = finalValue(a, rs);
    return o;
  });
  const keys = sort ?? groupBy.map((field) => ({ field, dir: 'asc' as const }));
  out.sort((x, y) => {
    for (const k of keys) {
      const c = refOrder(x[k.field], y[k.field]);
      if (c !== 0) return k.dir === 'desc' ? -c : c;
    }
    return 0;
  });
  return limit === undefined ? out : out.slice(0, limit);
}

function run(
  parts: FetchRespMessage[],
  groupBy: string[],
  aggs: AggregateSpec[],
  sort?: SortSpec[],
  limit?: number,
): Row[] {
  return [...combineAggregates(parts, groupBy, aggs, sort, limit)].map((l) => JSON.parse(l) as Row);
}

const G_VALUES = ['a', 'b', 'é', '\uff21', '\u{1f600}', 2, 10, -1, null, undefined];
const H_VALUES = ['x', 'y', 3, null, undefined];
const V_VALUES = [null, undefined, true, false, 'x', 'é', '\u{1f600}', '\uff21', ''];

function dataSet(r: () => number, n: number): Row[] {
  return Array.from({ length: n }, (_, i) => {
    const row: Row = { _id: `r${i}` };
    const g = pick(r, G_VALUES);
    const h = pick(r, H_VALUES);
    // Mostly integers (sums stay exact), sometimes anything else a document may hold.
    const v = r() < 0.7 ? Math.floor(r() * 201) - 100 : pick(r, V_VALUES);
    if (g !== undefined) row.g = g;
    if (h !== undefined) row.h = h;
    if (v !== undefined) row.v = v;
    if (r() < 0.5) row.w = Math.floor(r() * 1000);
    return row;
  });
}

/** Splits rows into three disjoint shards at random (some may be empty). */
function shard3(r: () => number, rows: Row[]): Row[][] {
  const shards: Row[][] = [[], [], []];
  for (const row of rows) shards[Math.floor(r() * 3)].push(row);
  return shards;
}

const AGGS: AggregateSpec[] = [
  { op: 'count' },
  { op: 'count', field: 'v' },
  { op: 'sum', field: 'v' },
  { op: 'avg', field: 'v' },
  { op: 'min', field: 'v' },
  { op: 'max', field: 'v' },
  { op: 'sum', field: 'w', as: 'total_w' },
  { op: 'avg', field: 'w', as: 'mean_w' },
  { op: 'max', field: 'w' },
];

describe('fetch merging', () => {
  describe('combineAggregates', () => {
    it('combines ungrouped partials of three shards into the aggregate of the whole data set', () => {
      for (let seed = 1; seed <= 30; seed++) {
        const r = rng(seed);
        const rows = dataSet(r, Math.floor(r() * 60));
        const parts = batches(r, shard3(r, rows), [], AGGS);
        const got = run(parts, [], AGGS);
        assert.deepEqual(got, expected(rows, [], AGGS, undefined, undefined), `seed ${seed}`);
        assert.equal(got.length, 1);
        assert.equal(got[0].count, rows.length);
      }
    });

    it('combines grouped partials into one row per group, null keys included, ordered by the group', () => {
      for (let seed = 100; seed < 130; seed++) {
        const r = rng(seed);
        const rows = dataSet(r, 20 + Math.floor(r() * 120));
        const parts = batches(r, shard3(r, rows), ['g'], AGGS);
        const want = expected(rows, ['g'], AGGS, undefined, undefined);
        assert.deepEqual(run(parts, ['g'], AGGS), want, `seed ${seed}`);
        if (rows.some((row) => row.g === undefined || row.g === null))
          assert.equal(want[0].g, null, 'the null group comes first');
      }
    });

    it('combines partials grouped by two fields', () => {
      for (let seed = 200; seed < 220; seed++) {
        const r = rng(seed);
        const rows = dataSet(r, 50 + Math.floor(r() * 150));
        const parts = batches(r, shard3(r, rows), ['g', 'h'], AGGS);
        assert.deepEqual(
          run(parts, ['g', 'h'], AGGS),
          expected(rows, ['g', 'h'], AGGS, undefined, undefined),
          `seed ${seed}`,
        );
      }
    });

    it('puts rows with a missing or null group field in one null group', () => {
      const rows: Row[] = [
        { _id: '1', v: 1 },
        { _id: '2', g: null, v: 2 },
        { _id: '3', g: 'a', v: 4 },
        { _id: '4', v: 8 },
      ];
      const aggs: AggregateSpec[] = [{ op: 'count' }, { op: 'sum', field: 'v' }];
      const parts = [
        resp('w0', 0, workerLines(rows.slice(0, 2), ['g'], aggs), true),
        resp('w1', 0, workerLines(rows.slice(2), ['g'], aggs), true),
      ];
      assert.deepEqual(run(parts, ['g'], aggs), [
        { g: null, count: 3, sum_v: 11 },
        { g: 'a', count: 1, sum_v: 4 },
      ]);
    });

    it('sorts by an aggregate column, descending, then applies the limit', () => {
      const sort: SortSpec[] = [
        { field: 'count', dir: 'desc' },
        { field: 'g', dir: 'asc' },
      ];
      for (let seed = 300; seed < 320; seed++) {
        const r = rng(seed);
        const rows = dataSet(r, 40 + Math.floor(r() * 100));
        const parts = batches(r, shard3(r, rows), ['g'], AGGS);
        for (const limit of [undefined, 0, 1, 3, 100]) {
          assert.deepEqual(
            run(parts, ['g'], AGGS, sort, limit),
            expected(rows, ['g'], AGGS, sort, limit),
            `seed ${seed} limit ${limit}`,
          );
        }
      }
    });

    it('orders by a single aggregate key: each value no larger than the one before, same rows', () => {
      for (let seed = 400; seed < 410; seed++) {
        const r = rng(seed);
        const rows = dataSet(r, 100);
        const parts = batches(r, shard3(r, rows), ['g'], AGGS);
        const got = run(parts, ['g'], AGGS, [{ field: 'total_w', dir: 'desc' }]);
        for (let i = 1; i < got.length; i++)
          assert.ok(refOrder(got[i - 1].total_w, got[i].total_w) >= 0, `seed ${seed} row ${i}`);
        const byG = (x: Row, y: Row) => refOrder(x.g, y.g);
        assert.deepEqual([...got].sort(byG), expected(rows, ['g'], AGGS, undefined, undefined).sort(byG));
      }
    });

    it('limits grouped output in group order without a sort', () => {
      const r = rng(500);
      const rows = dataSet(r, 200);
      const parts = batches(r, shard3(r, rows), ['g'], AGGS);
      const all = expected(rows, ['g'], AGGS, undefined, undefined);
      assert.ok(all.length > 4);
      assert.deepEqual(run(parts, ['g'], AGGS, undefined, 4), all.slice(0, 4));
      assert.deepEqual(run(parts, ['g'], AGGS, undefined, 0), []);
    });

    it('answers one row with count 0 and nulls for an ungrouped aggregate over no rows', () => {
      const want = {
        count: 0,
        count_v: 0,
        sum_v: null,
        avg_v: null,
        min_v: null,
        max_v: null,
        total_w: null,
        mean_w: null,
        max_w: null,
      };
      assert.deepEqual(run([], [], AGGS), [want]);
      assert.deepEqual(run([resp('w0', 0, [], true), resp('w1', 0, [], true)], [], AGGS), [want]);
      const empties = [0, 1, 2].map((w) => resp(`w${w}`, 0, workerLines([], [], AGGS), true));
      assert.deepEqual(run(empties, [], AGGS), [want]);
    });

    it('answers no rows for a grouped aggregate over no rows', () => {
      assert.deepEqual(run([], ['g'], AGGS), []);
      assert.deepEqual(run([resp('w0', 0, [], true)], ['g'], AGGS), []);
    });

    it('averages over the numeric values of all workers, not the mean of their means', () => {
      const aggs: AggregateSpec[] = [{ op: 'avg', field: 'v' }];
      const parts = [
        resp('w0', 0, ['{"g":[],"a":[[10,1]]}'], true),
        resp('w1', 0, ['{"g":[],"a":[[2,3]]}'], true),
        resp('w2', 0, ['{"g":[],"a":[[null,0]]}'], true),
      ];
      assert.deepEqual(run(parts, [], aggs), [{ avg_v: 3 }]);
    });

    it('takes min and max across workers in SQLite order: numbers before text, text by UTF-8 bytes', () => {
      const aggs: AggregateSpec[] = [
        { op: 'min', field: 'v' },
        { op: 'max', field: 'v' },
      ];
      const parts = [
        resp('w0', 0, ['{"g":[],"a":[5,"\uff21"]}'], true),
        resp('w1', 0, ['{"g":[],"a":[null,null]}'], true),
        resp('w2', 0, ['{"g":[],"a":[-2,"\ud83d\ude00"]}'], true),
        resp('w3', 0, ['{"g":[],"a":["a",9]}'], true),
      ];
      assert.deepEqual(run(parts, [], aggs), [{ min_v: -2, max_v: '\u{1f600}' }]);
    });
  });

  describe('countOncePerChunk', () => {
    const ack = (worker: string, counts?: Record<string, number>) =>
      ({
        type: 'OP_ACK',
        op: '01OP',
        kind: 'update',
        worker,
        status: 'ok',
        count: Object.values(counts ?? {}).reduce((a, b) => a + b, 0),
        counts,
      }) as unknown as OpAckMessage;

    it('counts each chunk once however many replicas report it', () => {
      const acks = [ack('w1', { c1: 3, c2: 5 }), ack('w2', { c2: 5, c3: 7 }), ack('w3', { c3: 7, c1: 3 })];
      assert.equal(countOncePerChunk(acks), 15);
    });

    it('takes the largest count when replicas disagree', () => {
      assert.equal(countOncePerChunk([ack('w1', { c1: 2 }), ack('w2', { c1: 4 }), ack('w3', { c1: 3 })]), 4);
    });

    it('counts nothing for no acks or acks without counts', () => {
      assert.equal(countOncePerChunk([]), 0);
      assert.equal(countOncePerChunk([ack('w1'), ack('w2', {})]), 0);
      assert.equal(
        countOncePerChunk(
          new Map([
            ['w1', ack('w1', { c9: 0 })],
            ['w2', ack('w2', { c8: 6 })],
          ]).values(),
        ),
        6,
      );
    });

    it('matches the number of distinct changed rows for random replica sets', () => {
      for (let seed = 1; seed <= 20; seed++) {
        const r = rng(seed);
        const chunks = Array.from({ length: 1 + Math.floor(r() * 10) }, (_, i) => ({
          id: `c${i}`,
          rows: Math.floor(r() * 50),
        }));
        const perWorker = new Map<string, Record<string, number>>();
        for (const c of chunks) {
          const replicas = ['w0', 'w1', 'w2', 'w3'].filter(() => r() < 0.6);
          if (replicas.length === 0) replicas.push('w0');
          for (const w of replicas) perWorker.set(w, { ...perWorker.get(w), [c.id]: c.rows });
        }
        const acks = [...perWorker].map(([w, counts]) => ack(w, counts));
        assert.equal(
          countOncePerChunk(acks),
          chunks.reduce((a, c) => a + c.rows, 0),
          `seed ${seed}`,
        );
      }
    });
  });

  describe('compareSql', () => {
    const sign = (x: number) => Math.sign(x) + 0;

    it('orders NULL before numbers before text', () => {
      assert.ok(compareSql(null, -1e300) < 0);
      assert.ok(compareSql(1e300, '') < 0);
      assert.ok(compareSql(null, '') < 0);
      assert.ok(compareSql('0', 0) > 0);
      assert.ok(compareSql(5, null) > 0);
      assert.equal(compareSql(null, null), 0);
    });

    it('orders numbers by value', () => {
      assert.ok(compareSql(-5, -1.5) < 0);
      assert.ok(compareSql(2, 10) < 0);
      assert.ok(compareSql(0.1 + 0.2, 0.3) > 0);
      assert.equal(compareSql(1, 1.0), 0);
      assert.equal(sign(compareSql(0, -0)), 0);
    });

    it('orders text by UTF-8 bytes, not UTF-16 code units', () => {
      // U+FF21 is EF BC A1 in UTF-8 and U+1F600 is F0 9F 98 80; in UTF-16 the emoji's
      // high surrogate D83D sorts first.
      assert.ok('\u{1f600}' < '\uff21', 'JavaScript order is the other way round');
      assert.ok(compareSql('\uff21', '\u{1f600}') < 0);
      assert.ok(compareSql('\u{1f600}', '\uff21') > 0);
      assert.ok(compareSql('B', 'a') < 0);
      assert.ok(compareSql('z', 'é') < 0);
      assert.ok(compareSql('', 'a') < 0);
      assert.ok(compareSql('ab', 'abc') < 0);
      assert.ok(compareSql('10', '9') < 0);
      assert.equal(compareSql('é', 'é'), 0);
    });

    it('is antisymmetric and agrees with an independent ordering', () => {
      const vals: SqlValue[] = [
        null,
        -3,
        0,
        2.5,
        10,
        '',
        '10',
        'a',
        'B',
        'é',
        '\uff21',
        '\u{1f600}',
        '\uffff',
        '\u{10000}',
      ];
      for (const a of vals) {
        for (const b of vals) {
          assert.equal(sign(compareSql(a, b)), 0 - sign(compareSql(b, a)), `${String(a)} vs ${String(b)}`);
          assert.equal(sign(compareSql(a, b)), sign(refOrder(a, b)), `${String(a)} vs ${String(b)}`);
        }
      }
    });

    describe('against SQLite', () => {
      let db: Database.Database;
      before(() => {
        db = new Database(':memory:');
      });
      after(() => db.close());

      const TEXTS = [
        '',
        ' ',
        'a',
        'A',
        'B',
        'b',
        'ab',
        'abc',
        '10',
        '9',
        'é',
        'e\u0301',
        'z',
        '\u007f',
        '\u0080',
        '\u07ff',
        '\u0800',
        '\uff21',
        '\uffff',
        '\u{10000}',
        '\u{1f600}',
        '日本',
        'null',
        'true',
      ];
      const NUMBERS = [-1e300, -100, -5, -1.5, -1, 0, 0.5, 1, 1.25, 2, 9, 10, 2 ** 53, 1e300];

      /** Ids in SQLite's `ORDER BY v, id` and in compareSql order (ties by id). */
      function bothOrders(insert: string, values: unknown[], asSql: (v: unknown) => SqlValue): [number[], number[]] {
        db.exec('DROP TABLE IF EXISTS t; CREATE TABLE t (id INTEGER PRIMARY KEY, v)');
        const ins = db.prepare(insert);
        values.forEach((v, id) => ins.run(id, v));
        const fromSqlite = db
          .prepare('SELECT id FROM t ORDER BY v, id')
          .all()
          .map((row) => (row as { id: number }).id);
        const fromJs = values
          .map((v, id) => ({ v: asSql(v), id }))
          .sort((a, b) => compareSql(a.v, b.v) || a.id - b.id)
          .map((x) => x.id);
        return [fromSqlite, fromJs];
      }

      it('orders typed NULL, INTEGER, REAL and TEXT values exactly as ORDER BY does', () => {
        const r = rng(9);
        const values: SqlValue[] = [null, null, ...NUMBERS, ...TEXTS];
        for (let i = 0; i < 200; i++)
          values.push(
            r() < 0.1 ? null : r() < 0.5 ? pick(r, NUMBERS) * (r() < 0.5 ? 1 : 3) : pick(r, TEXTS) + pick(r, TEXTS),
          );
        for (let i = values.length - 1; i > 0; i--) {
          const j = Math.floor(r() * (i + 1));
          [values[i], values[j]] = [values[j], values[i]];
        }
        const [fromSqlite, fromJs] = bothOrders('INSERT INTO t (id, v) VALUES (?, ?)', values, (v) => v as SqlValue);
        assert.deepEqual(fromJs, fromSqlite);
        // The table really holds mixed storage classes.
        const classes = db.prepare('SELECT DISTINCT typeof(v) AS c FROM t ORDER BY c').all() as { c: string }[];
        assert.deepEqual(
          classes.map((x) => x.c).filter((c) => c !== 'integer'),
          ['null', 'real', 'text'],
        );
      });

      it('orders the json_extract values of JSON documents (booleans as 0/1, objects as text) as ORDER BY does', () => {
        const r = rng(10);
        const pool: unknown[] = [
          null,
          true,
          false,
          0,
          1,
          -1,
          0.5,
          2 ** 40,
          ...TEXTS,
          { a: 1 },
          [1, 2],
          [],
          {},
          { b: ['é'] },
          'true',
          '1',
        ];
        const values = Array.from({ length: 300 }, () => pick(r, pool));
        const [fromSqlite, fromJs] = bothOrders(
          "INSERT INTO t (id, v) VALUES (?, json_extract(?, '$'))",
          values.map((v) => JSON.stringify(v)),
          (text) => toSqlValue(JSON.parse(text as string)),
        );
        assert.deepEqual(fromJs, fromSqlite);
      });
    });
  });
});

describe('a sorted answer waiting to be merged (SortedInput)', () => {
  const line = (i: number) => `[${i},"r${i}"]\t{"_id":"r${i}","n":${i}}`;

  it('hands lines on in order, keys parsed, and lets go of what was taken when the next batch comes', () => {
    const input = new SortedInput();
    let sent = 0;
    let taken = 0;
    // A worker sending 100-line batches ahead of a merge that takes 99 between two of them.
    for (let batch = 0; batch < 200; batch++) {
      input.push(Array.from({ length: 100 }, () => line(sent++)));
      assert.ok(input.retained <= 300, `holds ${input.retained} lines after ${batch + 1} batches`);
      for (let k = 0; k < 99; k++) {
        assert.deepEqual(input.peek().keys, [taken, `r${taken}`]);
        const r = input.take();
        assert.equal(r.row, `{"_id":"r${taken}","n":${taken}}`);
        taken++;
      }
    }
    assert.equal(input.size, sent - taken);
    while (input.size > 0) assert.deepEqual(input.take().keys, [taken, `r${taken++}`]);
    assert.equal(taken, sent);
    assert.equal(input.retained, 0);
  });
});
