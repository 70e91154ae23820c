/**
 * CSV typed the way mongoimport and pandas infer it (issue 13), checked with real data: the
 * vega-datasets airports file into a table without a schema. And filters checked against a
 * typed table's schema: a wrong field or a value of the wrong type is a 400, not an empty answer.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { clusterSuite } from '../support/cluster';
import { projectRoot } from '../support/processes';

const FILE = path.join(projectRoot(), 'test', 'fixtures', 'vega', 'airports-head.csv');

/** The file read by hand, independently of the CSV parser under test (it has no quotes). */
function reference(): Record<string, string>[] {
  const text = fs.readFileSync(FILE, 'utf8');
  assert.ok(!text.includes('"'), 'the fixture has no quoted fields');
  const [head, ...lines] = text.trimEnd().split('\n');
  const cols = head.split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i], v])));
}

describe('e2e: CSV into a table without a schema (vega-datasets airports)', function () {
  this.timeout(60_000);
  const e2e = clusterSuite({ workers: 2, replicas: 2, env: { DSTORE_CHUNK_ROWS: '25' } });
  const ref = reference();

  before(async () => {
    for (const t of ['airports', 'airports_text'])
      assert.equal((await e2e.cluster.api('PUT', `/tables/${t}`)).status, 201);
    const csv = fs.readFileSync(FILE, 'utf8');
    assert.equal((await e2e.cluster.api('POST', '/tables/airports/records', csv, 'text/csv')).status, 200);
    assert.equal(
      (await e2e.cluster.api('POST', '/tables/airports_text/records?csvTypes=string', csv, 'text/csv')).status,
      200,
    );
  });

  it('stores numbers as numbers, so numeric filters and aggregates work', async () => {
    const north = ref
      .filter((r) => Number(r.latitude) > 60)
      .map((r) => r.iata)
      .sort();
    assert.ok(north.length >= 5);
    const got = await e2e.cluster.query<{ iata: string }>('airports', {
      where: { latitude: { $gt: 60 } },
      fields: ['iata'],
    });
    assert.deepEqual(got.map((r) => r.iata).sort(), north);
    const [avg] = await e2e.cluster.query<{ avg_latitude: number }>('airports', {
      aggregate: [{ op: 'avg', field: 'latitude' }],
    });
    const want = ref.reduce((s, r) => s + Number(r.latitude), 0) / ref.length;
    assert.ok(Math.abs(avg.avg_latitude - want) < 1e-9, `${avg.avg_latitude} vs ${want}`);
  });

  it('keeps codes and names as text, leading zeros included', async () => {
    const rows = await e2e.cluster.query<Record<string, unknown>>('airports', { where: { iata: '00M' } });
    assert.deepEqual(
      rows.map(({ _id, ...r }) => (void _id, r)),
      [
        {
          iata: '00M',
          name: 'Thigpen',
          city: 'Bay Springs',
          state: 'MS',
          country: 'USA',
          latitude: 31.95376472,
          longitude: -89.23450472,
        },
      ],
    );
    const all = await e2e.cluster.query<Record<string, unknown>>('airports');
    assert.equal(all.length, ref.length);
    for (const r of all) assert.equal(typeof r.iata, 'string');
  });

  it('keeps every value as text with csvTypes=string', async () => {
    const got = await e2e.cluster.query<Record<string, unknown>>('airports_text', { where: { iata: '00M' } });
    assert.equal(got[0].latitude, '31.95376472');
    const numeric = await e2e.cluster.query('airports_text', { where: { latitude: { $gt: 60 } } });
    assert.equal(numeric.length, 0, 'text never compares greater than a number');
    const bad = await e2e.cluster.api<{ error: string; message: string }>(
      'POST',
      '/tables/airports_text/records?csvTypes=numbers',
      'a\n1\n',
      'text/csv',
    );
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /csvTypes.*use one of infer, string/);
  });
});

describe('e2e: filters on a table with a schema', function () {
  this.timeout(60_000);
  const e2e = clusterSuite({ workers: 1, replicas: 1 });

  before(async () => {
    await e2e.cluster.api('PUT', '/tables/flights', {
      schema: { origin: 'string', delay: 'integer', distance: 'number', cancelled: 'boolean', extra: 'json' },
    });
    await e2e.cluster.api(
      'POST',
      '/tables/flights/records',
      '{"origin":"SEA","delay":5,"distance":100.5,"cancelled":false,"extra":{"gate":"A1"}}\n',
      'application/x-ndjson',
    );
  });

  const refused: [string, unknown, RegExp][] = [
    ['an unknown field', { dest: 'LAX' }, /unknown field "dest"; the table's columns are _id, origin, delay/],
    [
      'a string for an integer column',
      { delay: '5' },
      /column "delay" is an integer column; compare it with a number, got the string "5"/,
    ],
    ['a number for a string column', { origin: { $in: ['SEA', 7] } }, /column "origin" is a string column/],
    [
      'a string for a boolean column',
      { cancelled: 'false' },
      /column "cancelled" is a boolean column; compare it with true or false/,
    ],
    [
      'a path inside a non-json column',
      { 'origin.code': 'S' },
      /addresses inside column "origin", which is a string, not json/,
    ],
    ['an unknown field under $or', { $or: [{ delay: 1 }, { nope: 1 }] }, /unknown field "nope"/],
  ];
  for (const [what, where, message] of refused) {
    it(`refuses ${what} with a 400 naming the field, in a query and in an UPDATE and a DELETE`, async () => {
      for (const [method, p, body] of [
        ['POST', '/tables/flights/query', { where }],
        ['PATCH', '/tables/flights/records', { where, set: { delay: 1 } }],
        ['DELETE', '/tables/flights/records', { where }],
      ] as const) {
        const r = await e2e.cluster.api<{ message: string; field: string }>(method, p, body);
        assert.equal(r.status, 400, `${method} ${p}: ${JSON.stringify(r.body)}`);
        assert.match(r.body.message, message);
      }
    });
  }

  it('accepts values of the column type, null, numbers with a fraction on an integer column, and paths inside json', async () => {
    for (const where of [
      { delay: { $gt: 4.5 } },
      { delay: null },
      { origin: 'SEA', cancelled: false },
      { 'extra.gate': 'A1' },
      { distance: { $lte: 100.5 } },
    ]) {
      const r = await e2e.cluster.api('POST', '/tables/flights/query', { where });
      assert.equal(r.status, 200, `${JSON.stringify(where)}: ${JSON.stringify(r.body)}`);
    }
  });
});
