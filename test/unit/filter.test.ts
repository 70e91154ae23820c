import { strict as assert } from 'node:assert';
import Database from 'better-sqlite3';
import { compileFilter, FilterError, jsonPath, matchesFilter, parseField } from '../../common/filter';
import { rng } from '../support/data';
import { assertOnlyFixedSql } from '../support/sql-check';

type Row = Record<string, unknown> & { _id: string };

const EVIL = "x'); DROP TABLE t; --";

/** Hand-made rows; the hand-written cases state which of these they match. */
const FIXED: Row[] = [
  { _id: 'f01', age: 5, name: 'alice', active: true, score: 1.5, addr: { city: 'Oslo', zip: 150 }, tags: ['a', 'b'] },
  { _id: 'f02', age: 10, name: 'bob', active: false, score: -2, addr: { city: 'Bergen', zip: '5003' } },
  { _id: 'f03', age: '10', name: 'Carol', active: 'true', score: '7' },
  { _id: 'f04', age: null, name: null, active: null, score: null, addr: null },
  { _id: 'f05' },
  { _id: 'f06', age: true, name: 'dave', active: 1, score: 1 },
  { _id: 'f07', age: { v: 5 }, name: { first: 'eve' }, active: [true], addr: { city: { name: 'Oslo' } } },
  { _id: 'f08', age: [5], name: ['alice'], tags: 'a' },
  { _id: 'f09', age: 5.5, name: '\uff21', score: 1.5e300 },
  { _id: 'f10', age: -3, name: '😀', score: 0, big: 2 ** 64 },
  { _id: 'f11', age: 100, name: 'é', score: 2 ** 53 },
  { _id: 'f12', age: 0, name: '', score: 0.1 + 0.2 },
  { _id: 'f13', age: false, name: 'a\u0000b' },
  { _id: 'f14', age: 1, name: '{"first":"eve"}' },
  { _id: 'f15', age: 7, name: 'a\ud800b', score: 1e-300 },
  // A computed "__proto__" key is an own property, as JSON.parse makes it.
  {
    _id: 'f16',
    'first name': 'Ann',
    'say "hi"': 'yes',
    "it's": 1,
    'back\\slash': 'b\\s',
    [EVIL]: 'evil',
    ünï: 'ü',
    日本: { 語: 1 },
    ['__proto__']: 'p',
  },
  { _id: 'f17', 'first name': 'Bob', 'say "hi"': 'no', "it's": 2, 'back\\slash': null },
  { _id: 'f18', deep: { a: { b: { c: 1 } } }, addr: 'Main street' },
  { _id: 'f19', deep: { a: { b: { c: 2 } } }, addr: { city: 'Oslo', zip: 151 } },
  { _id: 'f20', deep: { a: [{ b: { c: 1 } }] }, age: 5 },
  { _id: 'F21', age: 50, name: 'Zed' },
  { _id: 'f22 ü', age: 20, name: 'bob' },
  { _id: 'f23', 'a"b': "'", '--': ';', ';': ') OR 1=1 --', ') OR 1=1 --': '\\', '\\': 'a\u0000b', "'": '--' },
];
const FIXED_IDS = FIXED.map((r) => r._id);

const NAMES = [
  'alice',
  'bob',
  'Carol',
  'dave',
  '',
  'é',
  'e\u0301',
  '😀',
  '\uff21',
  'a\u0000b',
  'a\ud800b',
  '\udfff',
  '10',
  'true',
  'null',
  "it's",
  'x"y',
  'Zed',
];
const CITIES = ['Oslo', 'Bergen', 'oslo', 'Åsane', 'Tromsø'];
const NUMS = [0, 1, -1, 5, 5.5, 10, 42, 99, 100, -3, 0.25, 1e-300, 1.5e300, 2 ** 53, -(2 ** 60)];

function randomRows(n: number): Row[] {
  const r = rng(42);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const mixed = (): unknown =>
    pick<() => unknown>([
      () => Math.floor(r() * 100),
      () => Math.floor(r() * 100),
      () => Math.floor(r() * 100),
      () => Math.round(r() * 10000) / 100,
      () => pick(NUMS),
      () => String(Math.floor(r() * 100)),
      () => r() < 0.5,
      () => null,
      () => ({ v: Math.floor(r() * 10) }),
      () => [Math.floor(r() * 10)],
      () => pick(NAMES),
    ])();
  const rows: Row[] = [];
  for (let i = 0; i < n; i++) {
    const row: Row = { _id: `r${String(i).padStart(3, '0')}` };
    const maybe = (p: number, k: string, v: () => unknown) => {
      if (r() < p) row[k] = v();
    };
    maybe(0.85, 'age', mixed);
    maybe(0.8, 'name', () => (r() < 0.8 ? pick(NAMES) : mixed()));
    maybe(0.7, 'active', () => pick([true, false, true, 'true', 1, 0, null]));
    maybe(0.7, 'score', () => (r() < 0.5 ? pick(NUMS) : mixed()));
    maybe(0.6, 'addr', () =>
      r() < 0.8
        ? {
            city: r() < 0.9 ? pick(CITIES) : null,
            zip: r() < 0.7 ? 100 + Math.floor(r() * 100) : String(Math.floor(r() * 9999)),
          }
        : pick(['street', null, 7]),
    );
    maybe(0.3, 'tags', () => (r() < 0.7 ? ['a', 'b'].slice(0, 1 + Math.floor(r() * 2)) : 'a'));
    maybe(0.3, 'deep', () => ({ a: { b: { c: Math.floor(r() * 3) } } }));
    maybe(0.2, 'first name', () => pick(NAMES));
    maybe(0.2, 'say "hi"', () => pick(['yes', 'no', 1]));
    maybe(0.1, EVIL, () => pick(['evil', 'x', 0]));
    rows.push(row);
  }
  return rows;
}

const db = new Database(':memory:');
db.exec('CREATE TABLE t (_id TEXT PRIMARY KEY, chunk TEXT NOT NULL, doc TEXT NOT NULL)');
const insert = db.prepare('INSERT INTO t (_id, chunk, doc) VALUES (?, ?, ?)');
// The reference sees each row exactly as SQLite does: parsed back from the stored text.
const ROWS: Row[] = [...FIXED, ...randomRows(280)].map((row) => {
  const doc = JSON.stringify(row);
  insert.run(row._id, 'c1', doc);
  return JSON.parse(doc) as Row;
});
const ALL_IDS = ROWS.map((r) => r._id).sort();

function sorted(ids: Iterable<string>): string[] {
  return [...ids].sort();
}

/** Runs a filter both ways; checks agreement, 0/1 values, exact NOT, and returns the matched ids. */
function check(filter: unknown): string[] {
  const { sql, params } = compileFilter(filter);
  assertOnlyFixedSql(sql);
  const values = db.prepare<unknown[], { _id: string; v: unknown }>(`SELECT _id, (${sql}) AS v FROM t`).all(...params);
  for (const { _id, v } of values)
    assert.ok(v === 0 || v === 1, `row ${_id} gave ${String(v)} for ${JSON.stringify(filter)}`);
  const got = sorted(values.filter((x) => x.v === 1).map((x) => x._id));
  assert.deepEqual(
    got,
    sorted(
      db
        .prepare<unknown[], { _id: string }>(`SELECT _id FROM t WHERE (${sql})`)
        .all(...params)
        .map((x) => x._id),
    ),
  );
  const negated = sorted(
    db
      .prepare<unknown[], { _id: string }>(`SELECT _id FROM t WHERE NOT (${sql})`)
      .all(...params)
      .map((x) => x._id),
  );
  assert.deepEqual(
    negated,
    ALL_IDS.filter((id) => !got.includes(id)),
    'NOT (sql) must be the exact complement',
  );
  const want = sorted(ROWS.filter((row) => matchesFilter(filter, row)).map((r) => r._id));
  assert.deepEqual(got, want, `SQL and matchesFilter disagree on ${JSON.stringify(filter)}`);
  return got;
}

function lookup(row: Row, field: string): unknown {
  return field
    .split('.')
    .reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), row);
}

function isScalar(v: unknown): boolean {
  return v === null || ['string', 'number', 'boolean'].includes(typeof v);
}

const except = (...ids: string[]) => FIXED_IDS.filter((id) => !ids.includes(id));
const GT5 = ['f02', 'f09', 'f11', 'f15', 'F21', 'f22 ü'];
const AGE_MISSING = ['f05', 'f16', 'f17', 'f18', 'f19', 'f23'];

/** [description, filter, the fixed rows it must match]. */
const CASES: [string, unknown, string[]][] = [
  ['implicit $eq on a number', { age: 5 }, ['f01', 'f20']],
  ['$eq on a number', { age: { $eq: 5 } }, ['f01', 'f20']],
  ['a number never equals a numeric string', { age: 10 }, ['f02']],
  ['a numeric string never equals a number', { age: '10' }, ['f03']],
  ['1 does not match true', { age: 1 }, ['f14']],
  ['0 does not match false', { age: 0 }, ['f12']],
  ['true matches only true', { age: true }, ['f06']],
  ['false matches only false', { age: false }, ['f13']],
  ['$gt skips strings, booleans, objects, arrays', { age: { $gt: 5 } }, GT5],
  ['$gte', { age: { $gte: 5 } }, ['f01', 'f02', 'f09', 'f11', 'f15', 'f20', 'F21', 'f22 ü']],
  ['$lt skips false and null', { age: { $lt: 5 } }, ['f10', 'f12', 'f14']],
  ['$lte', { age: { $lte: 0 } }, ['f10', 'f12']],
  ['two operators are AND', { age: { $gt: 5, $lt: 50 } }, ['f02', 'f09', 'f15', 'f22 ü']],
  ['$ne includes missing, null, other types', { age: { $ne: 5 } }, except('f01', 'f20')],
  ['null matches null and missing', { age: null }, ['f04', ...AGE_MISSING]],
  ['$eq null', { age: { $eq: null } }, ['f04', ...AGE_MISSING]],
  ['$ne null', { age: { $ne: null } }, except('f04', ...AGE_MISSING)],
  ['$exists true counts JSON null', { age: { $exists: true } }, except(...AGE_MISSING)],
  ['$exists false', { age: { $exists: false } }, AGE_MISSING],
  ['$not keeps missing and other types', { age: { $not: { $gt: 5 } } }, except(...GT5)],
  ['$not $not', { age: { $not: { $not: { $gt: 5 } } } }, GT5],
  ['$not $exists', { age: { $not: { $exists: true } } }, AGE_MISSING],
  ['$in across types', { age: { $in: [5, '10', true, null] } }, ['f01', 'f03', 'f04', 'f06', 'f20', ...AGE_MISSING]],
  ['$in numbers does not take booleans', { age: { $in: [1, 0] } }, ['f12', 'f14']],
  ['empty $in', { age: { $in: [] } }, []],
  ['empty $nin', { age: { $nin: [] } }, FIXED_IDS],
  ['$nin is NOT $in', { age: { $nin: [5, null] } }, except('f01', 'f20', 'f04', ...AGE_MISSING)],
  ['$ne together with $exists', { age: { $ne: 5, $exists: true } }, except('f01', 'f20', ...AGE_MISSING)],
  [
    'strings order by UTF-8 bytes',
    { name: { $gt: 'Z' } },
    ['f01', 'f02', 'f06', 'f09', 'f10', 'f11', 'f13', 'f14', 'f15', 'F21', 'f22 ü'],
  ],
  ['astral characters sort after U+FF21 (unlike UTF-16)', { name: { $gt: '\uff21' } }, ['f10']],
  ['NUL inside strings compares', { name: { $lt: 'a\u0001' } }, ['f03', 'f12', 'f13', 'F21']],
  ['NUL does not truncate', { name: { $in: ['a', 'a\u0000b'] } }, ['f13']],
  ['lone surrogates sort by code point', { name: { $gt: 'a\ud800', $lt: 'a\ue000' } }, ['f15']],
  ['JSON text of an object is not the object', { name: '{"first":"eve"}' }, ['f14']],
  ['arrays do not equal their element', { name: 'alice' }, ['f01']],
  [
    '$nin with null',
    { name: { $nin: ['bob', null] } },
    except('f02', 'f22 ü', 'f04', 'f05', 'f16', 'f17', 'f18', 'f19', 'f20', 'f23'),
  ],
  ['_id equality', { _id: 'f05' }, ['f05']],
  ['_id $in', { _id: { $in: ['f01', 'f02', 'nope', 5, null] } }, ['f01', 'f02']],
  ['_id ordering is bytewise', { _id: { $lt: 'f' } }, ['F21']],
  ['_id $gt', { _id: { $gt: 'f22', $lt: 'f23' } }, ['f22 ü']],
  ['_id never equals a number', { _id: 5 }, []],
  ['_id is never null', { _id: null }, []],
  ['_id $ne null', { _id: { $ne: null } }, FIXED_IDS],
  ['_id always exists', { _id: { $exists: false } }, []],
  ['nested field', { 'addr.city': 'Oslo' }, ['f01', 'f19']],
  ['nested range', { 'addr.zip': { $gte: 150 } }, ['f01', 'f19']],
  ['nested $exists', { 'addr.city': { $exists: true } }, ['f01', 'f02', 'f07', 'f19']],
  ['nested null through a string or null parent', { 'addr.city': null }, except('f01', 'f02', 'f07', 'f19')],
  ['deep path does not walk into arrays', { 'deep.a.b.c': 1 }, ['f18']],
  ['no array indexing', { 'deep.a.0.b.c': 1 }, []],
  ['deep $exists', { 'deep.a.b': { $exists: true } }, ['f18', 'f19']],
  ['objects satisfy $ne', { deep: { $ne: 1 } }, FIXED_IDS],
  ['arrays satisfy $exists', { tags: { $exists: true } }, ['f01', 'f08']],
  ['a string, not an array containing it', { tags: 'a' }, ['f08']],
  ['field name with a space', { 'first name': 'Ann' }, ['f16']],
  ['field name with double quotes', { 'say "hi"': { $in: ['yes', 'no'] } }, ['f16', 'f17']],
  ['field name with a single quote', { "it's": { $gte: 1 } }, ['f16', 'f17']],
  ['field name with a backslash', { 'back\\slash': 'b\\s' }, ['f16']],
  ['null vs missing on an odd name', { 'back\\slash': null }, except('f16')],
  ['field name that looks like SQL', { [EVIL]: 'evil' }, ['f16']],
  ['unicode field names', { ünï: 'ü', '日本.語': 1 }, ['f16']],
  ['__proto__ is an ordinary field', { ['__proto__']: 'p' }, ['f16']],
  ['inherited names are not fields', { constructor: { $exists: true } }, []],
  ['booleans only equal booleans', { active: true }, ['f01']],
  ['range on a number skips true', { active: { $gt: 0 } }, ['f06']],
  ['$in mixing true and 1', { active: { $in: [true, 1] } }, ['f01', 'f06']],
  ['the string "true"', { active: 'true' }, ['f03']],
  ['huge real equals itself', { score: 1.5e300 }, ['f09']],
  ['huge real in a range', { score: { $gt: 1e300 } }, ['f09']],
  ['huge real in $in', { score: { $in: [1.5e300, 1e-300] } }, ['f09', 'f15']],
  ['tiny real', { score: { $gt: 0, $lt: 1e-299 } }, ['f15']],
  ['2^53', { score: { $gte: 2 ** 53, $lte: 2 ** 53 } }, ['f11']],
  ['0.1 + 0.2', { score: 0.1 + 0.2 }, ['f12']],
  ['0.3 is not 0.1 + 0.2', { score: 0.3 }, []],
  ['-0 equals 0', { score: -0 }, ['f10']],
  ['integers beyond int64 compare as numbers', { big: { $eq: 2 ** 64, $gt: 2 ** 63 } }, ['f10']],
  ['$or', { $or: [{ age: 5 }, { name: 'bob' }] }, ['f01', 'f02', 'f20', 'f22 ü']],
  ['$and', { $and: [{ age: { $gte: 5 } }, { age: { $lt: 10 } }] }, ['f01', 'f09', 'f15', 'f20']],
  ['several keys are AND', { age: { $gt: 5 }, name: 'bob' }, ['f02', 'f22 ü']],
  ['top-level $not', { $not: { age: 5 } }, except('f01', 'f20')],
  ['top-level $not keeps rows the inner filter finds unknown', { $not: { age: { $gt: 5 } } }, except(...GT5)],
  [
    '$not of $or',
    { $not: { $or: [{ age: null }, { age: { $gt: 0 } }] } },
    ['f03', 'f06', 'f07', 'f08', 'f10', 'f12', 'f13'],
  ],
  ['empty filter', {}, FIXED_IDS],
  ['$and of an empty filter', { $and: [{}] }, FIXED_IDS],
  ['$or with an empty filter', { $or: [{}, { age: 5 }] }, FIXED_IDS],
  ['$not of an empty filter', { $not: {} }, []],
  [
    'odd names hold odd values',
    { 'a"b': "'", '--': ';', ';': ') OR 1=1 --', ') OR 1=1 --': '\\', '\\': 'a\u0000b', "'": '--' },
    ['f23'],
  ],
];

describe('filter', () => {
  describe('hand-written cases', () => {
    for (const [title, filter, fixed] of CASES) {
      it(title, () => {
        const got = check(filter);
        assert.deepEqual(
          got.filter((id) => FIXED_IDS.includes(id)),
          sorted(fixed),
        );
      });
    }
  });

  it('treats undefined, null and {} as match-all "1"', () => {
    for (const f of [undefined, null, {}]) assert.deepEqual(compileFilter(f), { sql: '1', params: [] });
    assert.equal(matchesFilter(undefined, { _id: 'x' }), true);
  });

  it('agrees with the reference on 300 random filters', () => {
    const r = rng(7);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
    const fields = [
      'age',
      'age',
      'name',
      'active',
      'score',
      'addr',
      'addr.city',
      'addr.zip',
      'tags',
      'deep.a.b.c',
      'first name',
      'say "hi"',
      EVIL,
      '_id',
      'nope',
    ];
    // Operands mostly come from values the field really holds, so filters hit rows.
    const seen = new Map(
      fields.map((f) => [
        f,
        ROWS.map((row) => (matchesFilter({ [f]: { $exists: true } }, row) ? lookup(row, f) : undefined)).filter(
          isScalar,
        ),
      ]),
    );
    let field = 'age';
    const any = (): unknown =>
      pick<() => unknown>([
        () => pick(NUMS),
        () => Math.floor(r() * 100),
        () => pick(NAMES),
        () => pick(CITIES),
        () => r() < 0.5,
        () => null,
      ])();
    const scalar = (): unknown => (r() < 0.7 && seen.get(field)!.length ? pick(seen.get(field)!) : any());
    const rangeValue = (): unknown => {
      const v = scalar();
      return typeof v === 'number' || typeof v === 'string' ? v : pick(NUMS);
    };
    const ops = (depth: number): Record<string, unknown> => {
      const out: Record<string, unknown> = {};
      const n = r() < 0.75 ? 1 : 2;
      for (let i = 0; i < n; i++) {
        const op = pick(['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists', '$not']);
        if (op === '$in' || op === '$nin') out[op] = Array.from({ length: Math.floor(r() * 5) }, scalar);
        else if (op === '$exists') out[op] = r() < 0.5;
        else if (op === '$not') out[op] = depth < 2 ? ops(depth + 1) : { $exists: true };
        else if (op === '$eq' || op === '$ne') out[op] = scalar();
        else out[op] = rangeValue();
      }
      return out;
    };
    const filter = (depth: number): Record<string, unknown> => {
      const out: Record<string, unknown> = {};
      const n = r() < 0.7 ? 1 : 2;
      for (let i = 0; i < n; i++) {
        const kind = depth < 3 ? r() : 0;
        if (kind > 0.8)
          out[pick(['$and', '$or'])] = Array.from({ length: 1 + Math.floor(r() * 3) }, () => filter(depth + 1));
        else if (kind > 0.7) out.$not = filter(depth + 1);
        else {
          field = pick(fields);
          out[field] = r() < 0.3 ? scalar() : ops(0);
        }
      }
      return out;
    };
    let interesting = 0;
    for (let i = 0; i < 300; i++) {
      const n = check(filter(0)).length;
      if (n > 0 && n < ROWS.length) interesting++;
    }
    assert.ok(interesting >= 150, `only ${interesting} of 300 random filters matched a proper subset`);
  });

  describe('SQL injection', () => {
    const texts = ["'", '"', '--', ';', ') OR 1=1 --', '\\', EVIL, 'a"b', 'a\u0000b', "'; DELETE FROM t; --"];
    const names = texts.filter((t) => !t.includes('\u0000'));
    it('binds every name and value; the SQL has none of the user text', () => {
      const filters: unknown[] = [{ _id: { $in: texts } }, ...texts.map((v) => ({ _id: v }))];
      for (const name of names) {
        filters.push(
          { [name]: texts[0] },
          { [name]: { $in: texts } },
          { [name]: { $gt: name, $ne: 'a\u0000b' } },
          { [name]: { $exists: true } },
        );
      }
      let matched = 0;
      for (const f of filters) {
        const { sql, params } = compileFilter(f);
        for (const t of texts.filter((x) => x !== "'"))
          assert.ok(!sql.includes(t), `SQL contains ${JSON.stringify(t)}: ${sql}`);
        assert.ok(params.length > 0);
        matched += check(f).length;
      }
      assert.ok(matched > 0);
      assert.equal((db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, ROWS.length);
    });

    it('rejects NUL and other control characters in names', () => {
      assert.throws(() => compileFilter({ 'a\u0000b': 1 }), /U\+0000/);
    });
  });

  describe('limits', () => {
    const nest = (levels: number): unknown => (levels === 0 ? { age: 5 } : { $and: [nest(levels - 1)] });
    it('accepts 32 levels of nesting and runs them', () => {
      assert.deepEqual(
        check(nest(32)).filter((id) => FIXED_IDS.includes(id)),
        ['f01', 'f20'],
      );
      let f: unknown = { $gt: 5 };
      for (let i = 0; i < 32; i++) f = { $not: f };
      check({ age: f });
    });
    it('rejects 33 levels', () => {
      assert.throws(
        () => compileFilter(nest(33)),
        (e: unknown) => e instanceof FilterError && /filter too complex/.test(e.message) && /\$and/.test(e.message),
      );
      let f: unknown = { $gt: 5 };
      for (let i = 0; i < 33; i++) f = { $not: f };
      assert.throws(() => compileFilter({ age: f }), /filter too complex.*\$not/);
    });
    it('accepts 1000 operators in one flat $and (within SQLite expression depth)', () => {
      const items = Array.from({ length: 999 }, (_, i) => ({ age: { $ne: i + 1000 } }));
      assert.equal(check({ $and: items }).length > 0, true);
      check({ $or: items.map((x) => ({ $not: x })).slice(0, 499) });
    });
    it('rejects 1001 operators', () => {
      const items = Array.from({ length: 1000 }, (_, i) => ({ age: i }));
      assert.throws(
        () => compileFilter({ $and: items }),
        (e: unknown) => e instanceof FilterError && /filter too complex: more than 1000 operators/.test(e.message),
      );
    });
    it('accepts $in with 10,000 values, rejects 10,001', () => {
      const vs = Array.from({ length: 10_000 }, (_, i) => (i % 2 ? i : `r${i}`));
      assert.ok(check({ age: { $in: vs }, name: { $nin: vs } }).length > 0);
      assert.throws(
        () => compileFilter({ age: { $in: [...vs, 1] } }),
        /\$in at where\.age has 10001 values; at most 10000/,
      );
    });
    it('uses the primary key for _id lookups', () => {
      const { sql, params } = compileFilter({ _id: 'f05' });
      const plan = db
        .prepare<unknown[], { detail: string }>(`EXPLAIN QUERY PLAN SELECT doc FROM t WHERE (${sql})`)
        .all(...params);
      assert.match(plan.map((p) => p.detail).join('\n'), /USING INDEX sqlite_autoindex_t_1 \(_id=\?\)/);
    });
  });

  describe('errors', () => {
    const bad: [string, unknown, string, RegExp][] = [
      [
        'unknown field operator',
        { name: { $regex: 'a' } },
        'where.name.$regex',
        /unknown operator "\$regex" at where\.name \(supported: \$eq, \$ne/,
      ],
      ['unknown top-level operator', { $nor: [] }, 'where.$nor', /unknown operator "\$nor" at where/],
      ['array at top level', [], 'where', /where must be an object.*got array/],
      ['string filter', 'age = 5', 'where', /got string/],
      [
        '$and not an array',
        { $and: { age: 1 } },
        'where.$and',
        /\$and at where needs a non-empty array of filters, got object/,
      ],
      ['empty $or', { $or: [] }, 'where.$or', /\$or at where needs a non-empty array.*empty array/],
      ['$or item not an object', { $or: [1] }, 'where.$or[0]', /where\.\$or\[0\] must be an object/],
      ['top-level $not not an object', { $not: [{ age: 1 }] }, 'where.$not', /where\.\$not must be an object/],
      ['$in not an array', { x: { $in: 5 } }, 'where.x.$in', /\$in at where\.x needs an array, got number/],
      [
        '$in with an object',
        { x: { $in: [1, {}] } },
        'where.x.$in[1]',
        /\$in at where\.x needs an array of strings.*object at item 1/,
      ],
      ['$nin with NaN', { x: { $nin: [NaN] } }, 'where.x.$nin[0]', /\$nin at where\.x .*NaN/],
      ['NaN value', { x: NaN }, 'where.x', /where\.x needs a string, number, boolean or null, got NaN/],
      [
        'Infinity in a range',
        { x: { $gt: Infinity } },
        'where.x.$gt',
        /\$gt at where\.x needs a number or string, got Infinity/,
      ],
      ['bigint', { x: { $eq: 1n } }, 'where.x.$eq', /\$eq at where\.x .*got bigint/],
      ['undefined value', { x: undefined }, 'where.x', /got undefined/],
      [
        'object equality',
        { x: { a: 1 } },
        'where.x',
        /where\.x: equality on objects is not supported; use dotted paths like "a\.b"/,
      ],
      ['empty object value', { x: {} }, 'where.x', /equality on objects/],
      ['operators mixed with fields', { x: { $gt: 1, y: 2 } }, 'where.x', /equality on objects/],
      ['array as a value', { x: [1, 2] }, 'where.x', /where\.x: an array is not a value.*\$in/],
      ['$eq with an array', { x: { $eq: [1] } }, 'where.x.$eq', /\$eq at where\.x .*got array/],
      [
        'range on a boolean',
        { x: { $gt: true } },
        'where.x.$gt',
        /\$gt at where\.x needs a number or string, got boolean/,
      ],
      ['range on null', { x: { $lte: null } }, 'where.x.$lte', /\$lte at where\.x needs a number or string, got null/],
      ['$exists not a boolean', { x: { $exists: 1 } }, 'where.x.$exists', /\$exists at where\.x needs true or false/],
      ['$not with a value', { x: { $not: 5 } }, 'where.x.$not', /\$not at where\.x needs an operator object/],
      ['$not with a field', { x: { $not: { y: 1 } } }, 'where.x.$not', /where\.x\.\$not: equality on objects/],
      ['$and at field level', { x: { $and: [] } }, 'where.x.$and', /unknown operator "\$and" at where\.x/],
      ['empty segment', { 'a..b': 1 }, 'where["a..b"]', /field name at where\["a\.\.b"\] has an empty segment/],
      ['$ segment', { 'a.$b': 1 }, 'where["a.$b"]', /segment starting with "\$" \("\$b"\)/],
      ['control character', { 'a\nb': 1 }, 'where["a\\nb"]', /control character U\+000A/],
      ['empty name', { '': 1 }, 'where[""]', /is empty/],
      ['over-long name', { ['x'.repeat(257)]: 1 }, `where.${'x'.repeat(257)}`, /is 257 characters long; at most 256/],
      ['bad name inside $or', { $or: [{ 'a.': 1 }] }, 'where.$or[0]["a."]', /empty segment/],
    ];
    for (const [title, filter, path, re] of bad) {
      it(`rejects ${title}`, () => {
        for (const run of [() => compileFilter(filter), () => matchesFilter(filter, { _id: 'x' })]) {
          assert.throws(run, (e: unknown) => {
            assert.ok(e instanceof FilterError, `not a FilterError: ${String(e)}`);
            assert.equal(e.path, path);
            assert.match(e.message, re);
            assert.equal(e.name, 'FilterError');
            return true;
          });
        }
      });
    }
    it('uses the given label in paths', () => {
      assert.throws(
        () => compileFilter({ x: { $gt: true } }, 'delete.where'),
        (e: unknown) =>
          e instanceof FilterError && e.path === 'delete.where.x.$gt' && /at delete\.where\.x/.test(e.message),
      );
    });
  });

  describe('parseField and jsonPath', () => {
    it('splits on dots and keeps everything else', () => {
      assert.deepEqual(parseField('a'), ['a']);
      assert.deepEqual(parseField('a.b.c'), ['a', 'b', 'c']);
      assert.deepEqual(parseField('first name'), ['first name']);
      assert.deepEqual(parseField(`say "hi".it's\\`), ['say "hi"', "it's\\"]);
      assert.deepEqual(parseField('x'.repeat(256)), ['x'.repeat(256)]);
      assert.deepEqual(parseField('a$'), ['a$']);
    });
    const bad: [string, RegExp][] = [
      ['', /field name "" is empty/],
      ['a..b', /field name "a\.\.b" has an empty segment/],
      ['.a', /empty segment/],
      ['a.', /empty segment/],
      ['$a', /field name "\$a" has a segment starting with "\$"/],
      ['a.$b', /"\$b"/],
      ['a\u0000b', /U\+0000/],
      ['a\u001fb', /U\+001F/],
      ['a\u007fb', /U\+007F/],
      ['x'.repeat(257), /257 characters long; at most 256/],
    ];
    for (const [field, re] of bad) {
      const shown = JSON.stringify(field.length > 20 ? field.slice(0, 20) + '…' : field).replace(/\u007f/g, '\\u007f');
      it(`rejects ${shown}`, () => {
        assert.throws(
          () => parseField(field),
          (e: unknown) => e instanceof FilterError && re.test(e.message),
        );
        assert.throws(() => jsonPath(field), FilterError);
      });
    }
    it('rejects a non-string', () => {
      assert.throws(() => parseField(5 as unknown as string), /must be a string, got number/);
    });
    it('quotes and escapes path labels', () => {
      assert.equal(jsonPath('a b.c'), '$."a b"."c"');
      assert.equal(jsonPath('a"b'), '$."a\\"b"');
      assert.equal(jsonPath('a\\b'), '$."a\\\\b"');
      assert.equal(jsonPath("it's"), `$."it's"`);
      assert.equal(jsonPath('日本.語'), '$."日本"."語"');
    });
    it('finds every odd name in SQLite', () => {
      const get = db.prepare<[string], { v: unknown }>(`SELECT json_extract(doc, ?) AS v FROM t WHERE _id = 'f23'`);
      for (const k of ['a"b', '--', ';', ') OR 1=1 --', '\\', "'"]) {
        assert.equal(get.get(jsonPath(k))?.v, FIXED[FIXED.length - 1][k]);
      }
      const f16 = db.prepare<[string], { v: unknown }>(`SELECT json_extract(doc, ?) AS v FROM t WHERE _id = 'f16'`);
      assert.equal(f16.get(jsonPath('back\\slash'))?.v, 'b\\s');
      assert.equal(f16.get(jsonPath(EVIL))?.v, 'evil');
      assert.equal(f16.get(jsonPath('日本.語'))?.v, 1);
    });
  });
});
