import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { clusterSuite } from '../support/cluster';
import { multiset } from '../support/data';
import { projectRoot } from '../support/processes';

/**
 * Real files as people have them, POSTed as they are: vega-datasets' cars.json (a JSON
 * array pretty-printed over 4,468 lines), the same rows re-indented with CRLF line ends and
 * a BOM, and as NDJSON with blank lines. Each is stored whole, and every read (count, rows,
 * a filter, a sort, a group-by) equals plain JavaScript over the parsed file. Records are
 * found by JSON's rules, never by newlines: before that fix the first two were a 500
 * ("worker w1 refused chunk …: chunk … has 100 ids but 1000 rows") that left dead letters behind.
 */

/** One record of cars.json. */
interface Car {
  Name: string;
  Miles_per_Gallon: number | null;
  Cylinders: number;
  Displacement: number;
  Horsepower: number | null;
  Weight_in_lbs: number;
  Acceleration: number;
  Year: number;
  Origin: string;
}

const FIXTURE = path.join(projectRoot(), 'test', 'fixtures', 'vega', 'cars.json');

/** SQL's view of a column: nulls take no part in sum, avg, min and max. */
function numbers(rows: Car[], field: keyof Car): number[] {
  return rows.map((r) => r[field]).filter((v): v is number => typeof v === 'number');
}

/** The group-by answer computed in JavaScript, one object per Origin, in Origin order. */
function byOrigin(rows: Car[]): Record<string, unknown>[] {
  const origins = [...new Set(rows.map((r) => r.Origin))].sort();
  return origins.map((Origin) => {
    const g = rows.filter((r) => r.Origin === Origin);
    const mpg = numbers(g, 'Miles_per_Gallon');
    return {
      Origin,
      count: g.length,
      mpg: mpg.reduce((a, b) => a + b, 0) / mpg.length,
      sum_Horsepower: numbers(g, 'Horsepower').reduce((a, b) => a + b, 0),
      min_Year: Math.min(...numbers(g, 'Year')),
      max_Weight_in_lbs: Math.max(...numbers(g, 'Weight_in_lbs')),
    };
  });
}

/** Equal, with numbers compared to 1e-9 relative (SQLite and V8 may add decimals in another order). */
function assertClose(got: Record<string, unknown>[], want: Record<string, unknown>[], what: string): void {
  assert.equal(got.length, want.length, `${what}: ${JSON.stringify(got)}`);
  got.forEach((g, i) => {
    assert.deepEqual(Object.keys(g).sort(), Object.keys(want[i]).sort(), `${what}: columns of ${JSON.stringify(g)}`);
    for (const [k, w] of Object.entries(want[i])) {
      const v = g[k];
      if (typeof w === 'number' && typeof v === 'number')
        assert.ok(Math.abs(v - w) <= 1e-9 * Math.max(1, Math.abs(w)), `${what}: ${k} is ${v}, expected ${w}`);
      else assert.deepEqual(v, w, `${what}: ${k}`);
    }
  });
}

describe('e2e: real files (vega-datasets cars.json) in any formatting', function () {
  this.timeout(180_000);
  const text = fs.readFileSync(FIXTURE, 'utf8');
  const cars = JSON.parse(text) as Car[];
  // 100 rows a chunk: each body is cut into 5 chunks, so chunk and request row numbers differ.
  const e2e = clusterSuite({ workers: 2, replicas: 2, env: { DSTORE_CHUNK_ROWS: '100' } });

  const ndjson = cars.map((c, i) => JSON.stringify(c) + ['\n', '\r\n\r\n', '\n  \t\n', '\n\n\n'][i % 4]).join('');
  const bodies: { table: string; what: string; contentType: string; body: string }[] = [
    {
      table: 'cars_published',
      what: 'cars.json as published (pretty-printed, LF)',
      contentType: 'application/json',
      body: text,
    },
    {
      table: 'cars_crlf_bom',
      what: 'JSON.stringify(rows, null, 2) with CRLF line ends and a BOM',
      contentType: 'application/json',
      body: '\ufeff' + JSON.stringify(cars, null, 2).replace(/\n/g, '\r\n') + '\r\n',
    },
    {
      table: 'cars_ndjson',
      what: 'NDJSON with blank and whitespace-only lines, LF and CRLF, and a BOM',
      contentType: 'application/x-ndjson',
      body: '\ufeff\n' + ndjson,
    },
  ];

  it('has the fixture it expects (406 records, pretty-printed)', () => {
    assert.equal(cars.length, 406);
    assert.ok(text.startsWith('[\n   {\n      "Name":'), 'cars.json is no longer the pretty-printed original');
    assert.equal(cars.filter((c) => c.Miles_per_Gallon === null).length, 8);
    assert.equal(cars.filter((c) => c.Horsepower === null).length, 6);
  });

  for (const b of bodies) {
    describe(b.what, () => {
      before(async () => {
        assert.equal((await e2e.cluster.api('PUT', `/tables/${b.table}`)).status, 201);
      });

      it('stores every record, in 5 chunks', async () => {
        const r = await e2e.cluster.api('POST', `/tables/${b.table}/records`, b.body, b.contentType);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.inserted, 406);
        assert.equal(r.body.chunks, 5);
        assert.equal(r.body.underReplicated, 0);
      });

      it('counts them', async () => {
        assert.deepEqual(await e2e.cluster.query(b.table, { aggregate: [{ op: 'count' }] }), [{ count: 406 }]);
      });

      it('answers exactly the rows of the file, each with its own _id', async () => {
        const rows = await e2e.cluster.query<Car & { _id: string }>(b.table);
        assert.equal(new Set(rows.map((r) => r._id)).size, 406, 'every row has a distinct _id');
        assert.deepEqual(multiset(rows.map(({ _id, ...rest }) => (void _id, rest))), multiset(cars));
      });

      it('filters as JavaScript does, nulls included', async () => {
        const got = await e2e.cluster.query<Car>(b.table, {
          where: { Origin: 'Japan', Miles_per_Gallon: { $gte: 30 } },
          fields: ['Name', 'Miles_per_Gallon', 'Year'],
        });
        const want = cars
          .filter((c) => c.Origin === 'Japan' && c.Miles_per_Gallon !== null && c.Miles_per_Gallon >= 30)
          .map(({ Name, Miles_per_Gallon, Year }) => ({ Name, Miles_per_Gallon, Year }));
        assert.ok(want.length > 20);
        assert.deepEqual(multiset(got), multiset(want));
        const noHp = await e2e.cluster.query<Car>(b.table, { where: { Horsepower: null }, fields: ['Name'] });
        assert.deepEqual(
          multiset(noHp),
          multiset(cars.filter((c) => c.Horsepower === null).map(({ Name }) => ({ Name }))),
        );
      });

      it('sorts and limits as JavaScript does', async () => {
        const got = await e2e.cluster.query(b.table, {
          sort: [{ field: 'Weight_in_lbs', dir: 'desc' }],
          limit: 5,
          fields: ['Name', 'Weight_in_lbs'],
        });
        const want = [...cars]
          .sort((x, y) => y.Weight_in_lbs - x.Weight_in_lbs)
          .slice(0, 5)
          .map(({ Name, Weight_in_lbs }) => ({ Name, Weight_in_lbs }));
        assert.deepEqual(got, want);
      });

      it('groups and aggregates as JavaScript does', async () => {
        const got = await e2e.cluster.query<Record<string, unknown>>(b.table, {
          groupBy: ['Origin'],
          aggregate: [
            { op: 'count' },
            { op: 'avg', field: 'Miles_per_Gallon', as: 'mpg' },
            { op: 'sum', field: 'Horsepower' },
            { op: 'min', field: 'Year' },
            { op: 'max', field: 'Weight_in_lbs' },
          ],
        });
        assertClose(
          [...got].sort((x, y) => String(x.Origin).localeCompare(String(y.Origin))),
          byOrigin(cars),
          'group by Origin',
        );
      });
    });
  }

  describe('after them', () => {
    it('no worker refused a chunk: no dead letters were left', async () => {
      assert.deepEqual(await e2e.cluster.redis.xrange(e2e.keys.dead, '-', '+'), []);
    });
  });

  describe('a chunk a worker refuses', () => {
    const table = 'refused';
    before(async () => {
      assert.equal((await e2e.cluster.api('PUT', `/tables/${table}`)).status, 201);
      const first = await e2e.cluster.api(
        'POST',
        `/tables/${table}/records`,
        JSON.stringify(cars.slice(0, 10).map((c, i) => ({ _id: `car-${i}`, ...c }))),
        'application/json',
      );
      assert.equal(first.status, 200, JSON.stringify(first.body));
    });

    it('is a 409 naming the request row and the _id when the worker already holds the _id', async () => {
      // Without its id index the coordinator cannot see the repeat: only the workers can, by
      // refusing the chunk that holds it (row 150 of the request is row 50 of its second chunk).
      await e2e.cluster.redis.del(e2e.keys.idIndex(table));
      const rows = cars.slice(0, 200).map((c, i) => ({ _id: i === 149 ? 'car-3' : `new-${i}`, ...c }));
      const r = await e2e.cluster.api<{ error: string; message: string; row?: number; field?: string }>(
        'POST',
        `/tables/${table}/records`,
        JSON.stringify(rows, null, 2),
        'application/json',
      );
      assert.equal(r.status, 409, JSON.stringify(r.body));
      assert.equal(r.body.error, 'conflict');
      assert.match(r.body.message, /^row 150: duplicate _id "car-3"/);
      assert.match(r.body.message, /nothing of this request was stored/);
      assert.equal(r.body.row, 150);
      assert.equal(r.body.field, '_id');
      assert.deepEqual(await e2e.cluster.query(table, { aggregate: [{ op: 'count' }] }), [{ count: 10 }]);
    });
  });
});
