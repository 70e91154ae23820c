import { strict as assert } from 'node:assert';
import { ApiError } from '../../coordinator/errors';
import {
  checkFilter,
  checkQueryFields,
  checkRow,
  inferCsvValue,
  parseSchema,
  typeCsvRecord,
  type Schema,
} from '../../coordinator/schema';

/** Runs `fn` and checks it throws a 400 ApiError whose message matches. */
function throws400(fn: () => unknown, message?: RegExp, details?: Record<string, unknown>): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ApiError, `expected an ApiError, got ${String(e)}`);
    assert.equal(e.status, 400);
    if (message) assert.match(e.message, message);
    if (details) for (const [k, v] of Object.entries(details)) assert.equal(e.details[k], v, `details.${k}`);
    return true;
  });
}

const SCHEMA: Schema = { s: 'string', i: 'integer', n: 'number', b: 'boolean', j: 'json' };

describe('table schema', () => {
  describe('parseSchema', () => {
    it('reads the object form', () => {
      assert.deepEqual(parseSchema({ age: 'integer', name: 'string', 'first name': 'string', _id: 'string' }), {
        age: 'integer',
        name: 'string',
        'first name': 'string',
        _id: 'string',
      });
    });

    it('reads the text form, trimming spaces and skipping empty entries', () => {
      assert.deepEqual(parseSchema('a:integer,b:string'), { a: 'integer', b: 'string' });
      assert.deepEqual(parseSchema(' a : number , ,b:boolean,c:json,'), { a: 'number', b: 'boolean', c: 'json' });
      assert.deepEqual(parseSchema('time:of:day:string'), { 'time:of:day': 'string' });
    });

    it('gives undefined for a missing schema', () => {
      assert.equal(parseSchema(undefined), undefined);
      assert.equal(parseSchema(null), undefined);
    });

    it('accepts every column type and nothing else', () => {
      for (const t of ['string', 'integer', 'number', 'boolean', 'json'])
        assert.deepEqual(parseSchema({ c: t }), { c: t });
      for (const t of ['int', 'String', 'float', 'text', '', 'object', 1, null, ['string']])
        throws400(() => parseSchema({ c: t }), /type/, { field: 'schema' });
      throws400(() => parseSchema('c:float'), /"float"/);
    });

    it('rejects text entries without a column:type pair', () => {
      throws400(() => parseSchema('a'), /column:type/);
      throws400(() => parseSchema(':integer'), /column:type/);
      throws400(() => parseSchema('a:integer,b'), /"b"/);
    });

    it('rejects inputs that are neither an object nor a string', () => {
      for (const x of [[['a', 'integer']], 5, true]) throws400(() => parseSchema(x), /schema must be/);
    });

    it('rejects bad column names', () => {
      for (const name of ['', 'a.b', '$a', 'a\u0000b', 'tab\there', 'del\u007f', 'x'.repeat(257)])
        throws400(() => parseSchema({ [name]: 'string' }), /schema column/);
      assert.deepEqual(parseSchema({ ['x'.repeat(256)]: 'string', a$: 'string' }), {
        ['x'.repeat(256)]: 'string',
        a$: 'string',
      });
    });

    it('requires _id, when listed, to be a string column', () => {
      for (const t of ['integer', 'number', 'boolean', 'json']) throws400(() => parseSchema({ _id: t }), /_id/);
      throws400(() => parseSchema('_id:integer'), /_id/);
    });

    it('rejects more than 1000 columns', () => {
      const many = Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`c${i}`, 'string']));
      throws400(() => parseSchema(many), /1001/);
      delete many.c1000;
      assert.equal(Object.keys(parseSchema(many)!).length, 1000);
    });
  });

  describe('checkRow', () => {
    it('accepts rows whose fields are columns of the right type', () => {
      checkRow({ s: 'x', i: -3, n: 1.5, b: false, j: { any: ['thing'] } }, SCHEMA, 1);
      checkRow({ i: 0, n: 7 }, SCHEMA, 1);
      checkRow({ i: Number.MAX_SAFE_INTEGER, n: -1e300, j: 'text' }, SCHEMA, 1);
      checkRow({}, SCHEMA, 1);
    });

    it('allows null in every column', () => {
      checkRow({ s: null, i: null, n: null, b: null, j: null }, SCHEMA, 1);
    });

    it('skips _id, whatever its value', () => {
      checkRow({ _id: 'abc', i: 1 }, SCHEMA, 1);
      checkRow({ _id: 5 }, { i: 'integer' }, 1);
    });

    it('rejects a field that is not a column, naming row and field', () => {
      throws400(() => checkRow({ s: 'x', extra: 1 }, SCHEMA, 7), /row 7\b.*"extra".*not in the table's schema/, {
        row: 7,
        field: 'extra',
      });
      throws400(() => checkRow({ extra: null }, SCHEMA, 2), /"extra"/);
    });
    // A row field named "constructor", "toString", "__proto__" … is found there: with
    // value null it passes as if it were a column, otherwise the 400 says it must be
    // "a function toString() { [native code] }" instead of "not in the table's schema".
    it('rejects fields named like Object.prototype members that are not columns', () => {
      throws400(() => checkRow({ constructor: null }, SCHEMA, 1), /"constructor".*not in the table's schema/);
      throws400(() => checkRow({ toString: 1 }, SCHEMA, 1), /"toString".*not in the table's schema/);
      throws400(
        () => checkRow(JSON.parse('{"__proto__": null}') as Record<string, unknown>, SCHEMA, 1),
        /not in the table's schema/,
      );
    });

    it('rejects values of the wrong type, naming row and field', () => {
      const bad: [string, unknown][] = [
        ['s', 1],
        ['s', true],
        ['s', { a: 1 }],
        ['i', 1.5],
        ['i', '1'],
        ['i', true],
        ['i', 2 ** 53],
        ['i', NaN],
        ['i', Infinity],
        ['n', '1.5'],
        ['n', NaN],
        ['n', -Infinity],
        ['n', false],
        ['b', 0],
        ['b', 'true'],
        ['b', []],
      ];
      for (const [field, v] of bad) {
        throws400(() => checkRow({ [field]: v }, SCHEMA, 3), new RegExp(`row 3\\b.*"${field}"`), { row: 3, field });
      }
    });
  });

  describe('typeCsvRecord', () => {
    it('converts strings to the column types', () => {
      assert.deepEqual(typeCsvRecord({ s: '12', i: '-42', n: '2.5e-3', b: 'TRUE', j: '{"a":[1,null]}' }, SCHEMA, 1), {
        s: '12',
        i: -42,
        n: 0.0025,
        b: true,
        j: { a: [1, null] },
      });
      assert.deepEqual(typeCsvRecord({ i: ' 7 ', n: ' -0.5 ', b: ' false ', j: '"x"' }, SCHEMA, 1), {
        i: 7,
        n: -0.5,
        b: false,
        j: 'x',
      });
    });

    it('leaves out empty cells', () => {
      const out = typeCsvRecord({ s: '', i: '', n: '3', b: '', j: '' }, SCHEMA, 1);
      assert.deepEqual(out, { n: 3 });
    });

    it('infers values without a schema: numbers, booleans, empty as null, codes stay text', () => {
      assert.deepEqual(
        typeCsvRecord(
          { _id: '007', zip: '00501', n: '12', x: '-3.5', ok: 'TRUE', no: 'false', e: '', s: 'Oslo' },
          undefined,
          1,
        ),
        {
          _id: '007',
          zip: '00501',
          n: 12,
          x: -3.5,
          ok: true,
          no: false,
          e: null,
          s: 'Oslo',
        },
      );
    });

    it('keeps text without a schema when asked (csvTypes=string), empty cells left out', () => {
      assert.deepEqual(typeCsvRecord({ a: '1', b: 'true', c: '' }, undefined, 1, 'string'), { a: '1', b: 'true' });
    });

    it('keeps strings for string columns, for _id and for fields outside the schema', () => {
      assert.deepEqual(typeCsvRecord({ _id: '01', s: '02', other: '3' }, SCHEMA, 1), {
        _id: '01',
        s: '02',
        other: '3',
      });
      assert.deepEqual(typeCsvRecord({ _id: '42' }, { _id: 'string' }, 1), { _id: '42' });
    });

    it('rejects cells that do not parse as their type, naming row and field', () => {
      const bad: [string, string][] = [
        ['i', '1.5'],
        ['i', '1e3'],
        ['i', 'abc'],
        ['i', '9007199254740993'],
        ['i', '+-1'],
        ['n', 'abc'],
        ['n', 'NaN'],
        ['n', 'Infinity'],
        ['n', ' '],
        ['n', '1,5'],
        ['b', 'yes'],
        ['b', '1'],
        ['j', '{bad'],
        ['j', "'single'"],
      ];
      for (const [field, raw] of bad) {
        throws400(() => typeCsvRecord({ [field]: raw }, SCHEMA, 9), new RegExp(`row 9\\b.*"${field}"`), {
          row: 9,
          field,
        });
      }
    });
    // are not decimal numbers: "0x10" becomes 16, "0b11" 3, "0o17" 15.
    it('rejects hexadecimal, binary and octal literals in a number column', () => {
      for (const raw of ['0x10', '0b11', '0o17']) throws400(() => typeCsvRecord({ n: raw }, SCHEMA, 1), /"n"/);
    });
    // one ("toString", "constructor") gets a function for a type, matches no case of the
    // switch and is silently dropped from the record instead of kept.
    it('keeps a CSV column named like an Object.prototype member', () => {
      assert.deepEqual(typeCsvRecord({ toString: 'x', i: '1' }, SCHEMA, 1), { toString: 'x', i: 1 });
    });
  });

  describe('inferCsvValue', () => {
    const cases: [string, unknown][] = [
      ['0', 0],
      ['-12', -12],
      ['3.25', 3.25],
      ['2.5e-3', 0.0025],
      ['-0.0', -0],
      ['9007199254740991', 9007199254740991],
      ['9007199254740993', '9007199254740993'],
      ['00501', '00501'],
      ['007', '007'],
      ['01.5', '01.5'],
      ['0E0', '0E0'],
      ['1e5', '1e5'],
      ['1.0e400', '1.0e400'],
      [' 12', ' 12'],
      ['12 ', '12 '],
      ['+5', '+5'],
      ['.5', '.5'],
      ['1,000', '1,000'],
      ['0x10', '0x10'],
      ['NaN', 'NaN'],
      ['Infinity', 'Infinity'],
      ['True', true],
      ['FALSE', false],
      ['yes', 'yes'],
      ['', null],
      ['null', 'null'],
    ];
    for (const [raw, want] of cases) {
      it(`reads ${JSON.stringify(raw)} as ${JSON.stringify(want)}`, () =>
        assert.ok(Object.is(inferCsvValue(raw), want) || inferCsvValue(raw) === want, String(inferCsvValue(raw))));
    }
  });

  describe('checkFilter', () => {
    it('does nothing without a schema', () => checkFilter({ anything: { $gt: 'x' } }, undefined));

    it('accepts columns with values of their type, null, $exists, json paths and _id', () => {
      checkFilter(
        {
          s: 'a',
          i: { $gte: 1.5, $lt: 9 },
          n: { $in: [1, 2.5, null] },
          b: true,
          'j.a.b': 'x',
          _id: { $in: ['a'] },
          $or: [{ s: { $exists: false } }],
        },
        SCHEMA,
      );
    });

    it('names the field and what to compare it with', () => {
      throws400(
        () => checkFilter({ nope: 1 }, SCHEMA),
        /where: unknown field "nope"; the table's columns are _id, s, i/,
        { field: 'where.nope' },
      );
      throws400(
        () => checkFilter({ i: '5' }, SCHEMA),
        /column "i" is an integer column; compare it with a number, got the string "5"/,
        { field: 'where.i' },
      );
      throws400(
        () => checkFilter({ $and: [{ s: 1 }] }, SCHEMA),
        /column "s" is a string column; compare it with a string, got number 1/,
      );
      throws400(
        () => checkFilter({ b: { $ne: 'true' } }, SCHEMA),
        /column "b" is a boolean column; compare it with true or false/,
      );
      throws400(
        () => checkFilter({ 's.x': 'y' }, SCHEMA),
        /"s\.x" addresses inside column "s", which is a string, not json/,
      );
      throws400(() => checkFilter({ _id: 5 }, SCHEMA), /column "_id" is a string column/);
      throws400(() => checkFilter({ i: { $bogus: 1 } }, SCHEMA), /unknown operator/);
    });

    it('is part of checkQueryFields', () => {
      throws400(() => checkQueryFields({ where: { i: 'x' } }, SCHEMA), /column "i"/);
    });
  });

  describe('checkQueryFields', () => {
    it('does nothing without a schema', () => {
      checkQueryFields({ fields: ['anything'], sort: [{ field: 'x', dir: 'asc' }] }, undefined);
    });

    it('accepts columns, _id, nested paths of a column and sorting by an aggregate output', () => {
      checkQueryFields(
        {
          groupBy: ['s', 'j.deep.er'],
          aggregate: [{ op: 'count' }, { op: 'sum', field: 'n' }, { op: 'max', field: 'i', as: 'top' }],
          sort: [
            { field: 'top', dir: 'desc' },
            { field: 'sum_n', dir: 'asc' },
            { field: 'count', dir: 'asc' },
            { field: 's', dir: 'asc' },
          ],
        },
        SCHEMA,
      );
      checkQueryFields({ fields: ['_id', 's', 'j.a'], sort: [{ field: '_id', dir: 'asc' }] }, SCHEMA);
    });

    it('rejects unknown fields wherever the query names them', () => {
      throws400(() => checkQueryFields({ fields: ['s', 'nope'] }, SCHEMA), /fields\[1\].*"nope"/, {
        field: 'fields[1]',
      });
      throws400(
        () => checkQueryFields({ groupBy: ['nope'], aggregate: [{ op: 'count' }] }, SCHEMA),
        /groupBy\[0\].*"nope"/,
      );
      throws400(
        () => checkQueryFields({ aggregate: [{ op: 'count' }, { op: 'sum', field: 'nope' }] }, SCHEMA),
        /aggregate\[1\]\.field.*"nope"/,
      );
      throws400(
        () =>
          checkQueryFields(
            {
              sort: [
                { field: 's', dir: 'asc' },
                { field: 'nope', dir: 'asc' },
              ],
            },
            SCHEMA,
          ),
        /sort\[1\]\.field.*"nope"/,
      );
      throws400(() => checkQueryFields({ fields: ['nope.s'] }, SCHEMA), /"nope\.s"/);
    });

    it('does not take an aggregate output name for a column outside aggregate queries', () => {
      throws400(() => checkQueryFields({ sort: [{ field: 'count', dir: 'asc' }] }, SCHEMA), /"count"/);
    });
    // "constructor" or "toString" pass as known columns.
    it('rejects field names that are Object.prototype members but not columns', () => {
      throws400(() => checkQueryFields({ fields: ['constructor'] }, SCHEMA), /"constructor"/);
      throws400(() => checkQueryFields({ sort: [{ field: 'toString', dir: 'asc' }] }, SCHEMA), /"toString"/);
    });
  });
});
