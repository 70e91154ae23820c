import { strict as assert } from 'node:assert';
import {
  FilterError,
  QueryError,
  QUERY_LIMITS,
  aggregateName,
  normalizeQuery,
  type QuerySpec,
} from '../../common/query';
import { fromQueryString } from '../../coordinator/api/query-routes';
import { ApiError } from '../../coordinator/errors';

/** Checks that normalising `q` throws a QueryError at `at`. */
function queryError(q: unknown, at: string, message?: RegExp): void {
  assert.throws(
    () => normalizeQuery(q as QuerySpec),
    (e: unknown) => {
      assert.ok(e instanceof QueryError, `expected a QueryError, got ${String(e)}`);
      assert.equal(e.at, at);
      assert.ok(e.message.startsWith(`${at}: `), e.message);
      if (message) assert.match(e.message, message);
      return true;
    },
  );
}

function apiError400(fn: () => unknown, field: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ApiError, `expected an ApiError, got ${String(e)}`);
    assert.equal(e.status, 400);
    assert.equal(e.details.field, field);
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe('query shape', () => {
  describe('aggregateName', () => {
    it('names a column by "as", else "count" for a bare count, else op_field', () => {
      assert.equal(aggregateName({ op: 'count' }), 'count');
      assert.equal(aggregateName({ op: 'count', field: 'x' }), 'count_x');
      assert.equal(aggregateName({ op: 'sum', field: 'price' }), 'sum_price');
      assert.equal(aggregateName({ op: 'avg', field: 'a.b' }), 'avg_a.b');
      assert.equal(aggregateName({ op: 'min', field: 'x', as: 'lowest' }), 'lowest');
      assert.equal(aggregateName({ op: 'count', as: 'n' }), 'n');
    });
  });

  describe('normalizeQuery', () => {
    it('returns an empty query for an empty one, dropping a null filter', () => {
      assert.deepEqual(normalizeQuery({}), {});
      assert.deepEqual(normalizeQuery({ where: null }), {});
    });

    it('fills in ascending sort directions and keeps the rest', () => {
      const q = normalizeQuery({
        where: { a: { $gt: 1 } },
        fields: ['a', 'b.c'],
        sort: [{ field: 'a' } as never, { field: 'b', dir: 'desc' }],
        limit: 10,
      });
      assert.deepEqual(q, {
        where: { a: { $gt: 1 } },
        fields: ['a', 'b.c'],
        sort: [
          { field: 'a', dir: 'asc' },
          { field: 'b', dir: 'desc' },
        ],
        limit: 10,
      });
    });

    it('refuses an unknown top-level key, naming it (a misspelt limit must not read everything)', () => {
      assert.throws(
        () => normalizeQuery({ lmit: 3 } as never),
        (e: Error) => e instanceof QueryError && e.at === 'lmit' && /unknown query key/.test(e.message),
      );
      assert.deepEqual(normalizeQuery({ limit: 3, fields: undefined }), { limit: 3 });
    });

    it('drops unknown keys of a sort entry or an aggregate', () => {
      const q = normalizeQuery({
        sort: [{ field: 'count', dir: 'desc', extra: 1 } as never],
        aggregate: [{ op: 'count', junk: true } as never],
        groupBy: ['g'],
      });
      assert.deepEqual(q, { sort: [{ field: 'count', dir: 'desc' }], aggregate: [{ op: 'count' }], groupBy: ['g'] });
    });

    it('keeps aggregates with groupBy and sorting by a group field or an output column', () => {
      const q = {
        groupBy: ['city'],
        aggregate: [
          { op: 'count' as const },
          { op: 'avg' as const, field: 'age', as: 'mean' },
          { op: 'max' as const, field: 'age' },
        ],
        sort: [
          { field: 'mean', dir: 'desc' as const },
          { field: 'max_age', dir: 'asc' as const },
          { field: 'city', dir: 'asc' as const },
          { field: 'count', dir: 'asc' as const },
        ],
        limit: 0,
      };
      assert.deepEqual(normalizeQuery(q), q);
    });

    it('accepts any whole limit from 0: its one cap is DSTORE_MAX_RESULT_ROWS, at the coordinator', () => {
      assert.equal(normalizeQuery({ limit: 0 }).limit, 0);
      assert.equal(normalizeQuery({ limit: 1_000_000_000 }).limit, 1_000_000_000);
    });

    it('rejects a limit that is not a whole number from 0, saying only that', () => {
      for (const limit of [-1, 1.5, NaN, Infinity, 2 ** 53, '5', null])
        queryError({ limit }, 'limit', /^limit: must be a whole number \(0 or more\), got /);
    });

    it('rejects an unknown aggregate op', () => {
      queryError({ aggregate: [{ op: 'count' }, { op: 'median', field: 'x' }] }, 'aggregate[1].op', /median/);
      queryError({ aggregate: [{ op: 'COUNT' }] }, 'aggregate[0].op');
      queryError({ aggregate: [{}] }, 'aggregate[0].op');
    });

    it('rejects sum, avg, min and max without a field, but not count', () => {
      for (const op of ['sum', 'avg', 'min', 'max'])
        queryError({ aggregate: [{ op }] }, 'aggregate[0].field', new RegExp(`${op} needs a field`));
      assert.deepEqual(normalizeQuery({ aggregate: [{ op: 'count' }] }), { aggregate: [{ op: 'count' }] });
    });

    it('rejects duplicate aggregate output names', () => {
      queryError({ aggregate: [{ op: 'count' }, { op: 'count' }] }, 'aggregate[1]', /duplicate output column "count"/);
      queryError(
        {
          aggregate: [
            { op: 'sum', field: 'a' },
            { op: 'count', as: 'sum_a' },
          ],
        },
        'aggregate[1]',
        /"sum_a"/,
      );
      queryError(
        {
          aggregate: [
            { op: 'min', field: 'a', as: 'x' },
            { op: 'max', field: 'b', as: 'x' },
          ],
        },
        'aggregate[1]',
        /"x"/,
      );
      // Same op on different fields, or a named copy, is fine.
      normalizeQuery({
        aggregate: [
          { op: 'sum', field: 'a' },
          { op: 'sum', field: 'b' },
          { op: 'sum', field: 'a', as: 'total' },
        ],
      });
    });
    // groupBy ["n"] and aggregate [{op:"count", as:"n"}] both output columns are "n":
    // normalizeQuery accepts it and combineAggregates overwrites the group value with the
    // count, so the groups come out unlabelled.
    it('rejects an aggregate output name that collides with a groupBy field', () => {
      queryError({ groupBy: ['n'], aggregate: [{ op: 'count', as: 'n' }] }, 'aggregate[0]', /"n"/);
      queryError({ groupBy: ['count'], aggregate: [{ op: 'count' }] }, 'aggregate[0]', /"count"/);
    });

    it('rejects groupBy without aggregate', () => {
      queryError({ groupBy: ['a'] }, 'groupBy', /needs aggregate/);
      queryError({ groupBy: [] }, 'groupBy');
    });

    it('rejects an empty aggregate list', () => {
      queryError({ aggregate: [] }, 'aggregate');
    });

    it('rejects fields combined with aggregate', () => {
      queryError({ fields: ['a'], aggregate: [{ op: 'count' }] }, 'fields', /aggregate/);
    });

    it('rejects sorting by a column that is not an output of the aggregate', () => {
      queryError(
        {
          groupBy: ['g'],
          aggregate: [{ op: 'count' }],
          sort: [
            { field: 'g', dir: 'asc' },
            { field: 'other', dir: 'asc' },
          ],
        },
        'sort[1].field',
        /count/,
      );
      // The input field of an aggregate is not an output column.
      queryError({ aggregate: [{ op: 'sum', field: 'x' }], sort: [{ field: 'x', dir: 'asc' }] }, 'sort[0].field');
    });

    it('rejects a bad sort direction or entry', () => {
      queryError({ sort: [{ field: 'a', dir: 'up' }] }, 'sort[0].dir', /"up"/);
      queryError({ sort: [{ field: 'a', dir: 'DESC' }] }, 'sort[0].dir');
      queryError({ sort: ['a'] }, 'sort[0]');
      queryError({ sort: [null] }, 'sort[0]');
      queryError({ sort: [{ dir: 'asc' }] }, 'sort[0].field');
    });

    it('rejects bad field names wherever they appear', () => {
      queryError({ fields: ['a', ''] }, 'fields[1]');
      queryError({ fields: ['a..b'] }, 'fields[0]');
      queryError({ fields: ['$where'] }, 'fields[0]');
      queryError({ fields: [1] }, 'fields[0]', /string/);
      queryError({ sort: [{ field: 'a.$b', dir: 'asc' }] }, 'sort[0].field');
      queryError({ groupBy: ['ok', 'x\u0001'], aggregate: [{ op: 'count' }] }, 'groupBy[1]');
      queryError({ aggregate: [{ op: 'sum', field: null }] }, 'aggregate[0].field');
      queryError({ aggregate: [{ op: 'count', as: '' }] }, 'aggregate[0].as');
    });

    it('rejects an empty field list and lists that are not arrays', () => {
      queryError({ fields: [] }, 'fields', /at least one/);
      queryError({ fields: 'a' }, 'fields', /array/);
      queryError({ sort: { field: 'a' } }, 'sort', /array/);
      queryError({ groupBy: 'a', aggregate: [{ op: 'count' }] }, 'groupBy', /array/);
      queryError({ aggregate: { op: 'count' } }, 'aggregate', /array/);
    });

    it('rejects lists longer than their limits', () => {
      const n = (k: number, f: (i: number) => unknown) => Array.from({ length: k }, (_, i) => f(i));
      queryError({ fields: n(QUERY_LIMITS.fields + 1, (i) => `f${i}`) }, 'fields', /at most/);
      queryError({ sort: n(QUERY_LIMITS.sort + 1, (i) => ({ field: `f${i}`, dir: 'asc' })) }, 'sort', /at most/);
      queryError(
        { aggregate: n(QUERY_LIMITS.aggregate + 1, (i) => ({ op: 'count', as: `c${i}` })) },
        'aggregate',
        /at most/,
      );
      queryError(
        { groupBy: n(QUERY_LIMITS.groupBy + 1, (i) => `g${i}`), aggregate: [{ op: 'count' }] },
        'groupBy',
        /at most/,
      );
      normalizeQuery({ sort: n(QUERY_LIMITS.sort, (i) => ({ field: `f${i}`, dir: 'asc' })) as never });
    });

    it('throws a FilterError for a bad filter', () => {
      for (const where of [{ a: { $foo: 1 } }, { $or: {} }, [1], 'a = 1', { a: { $in: 5 } }]) {
        assert.throws(() => normalizeQuery({ where }), FilterError, JSON.stringify(where));
      }
    });
  });

  describe('fromQueryString', () => {
    it('gives an empty query for no parameters', () => {
      assert.deepEqual(fromQueryString({}), {});
      assert.deepEqual(fromQueryString({ where: '', fields: '', sort: '' }), {});
    });

    it('reads where as JSON, fields as a list and limit as a number', () => {
      assert.deepEqual(
        fromQueryString({ where: '{"age":{"$gte":18},"name":"a,b"}', fields: 'a, b.c ,_id', limit: '25' }),
        {
          where: { age: { $gte: 18 }, name: 'a,b' },
          fields: ['a', 'b.c', '_id'],
          limit: 25,
        },
      );
      assert.deepEqual(fromQueryString({ limit: '0' }), { limit: 0 });
    });

    it('reads sort as field[:dir] pairs, ascending by default', () => {
      assert.deepEqual(fromQueryString({ sort: 'f:desc,g' }).sort, [
        { field: 'f', dir: 'desc' },
        { field: 'g', dir: 'asc' },
      ]);
      assert.deepEqual(fromQueryString({ sort: 'a.b:asc,c:desc' }).sort, [
        { field: 'a.b', dir: 'asc' },
        { field: 'c', dir: 'desc' },
      ]);
      assert.deepEqual(fromQueryString({ sort: 'time:of:day:desc' }).sort, [{ field: 'time:of:day', dir: 'desc' }]);
    });

    it('rejects a where that is not JSON with a 400', () => {
      apiError400(() => fromQueryString({ where: '{age:1}' }), 'where', /JSON/);
      apiError400(() => fromQueryString({ where: "{'a':1}" }), 'where');
    });

    it('rejects a limit that is not a whole number with a 400', () => {
      for (const limit of ['-1', '1.5', 'ten', '', ' 5', '1e3', '0x10'])
        apiError400(() => fromQueryString({ limit }), 'limit', /whole number/);
    });

    it('rejects a sort direction other than asc or desc with a 400', () => {
      apiError400(() => fromQueryString({ sort: 'f:down' }), 'sort', /asc or desc/);
      apiError400(() => fromQueryString({ sort: 'g,f:DESC' }), 'sort', /"f:DESC"/);
    });
  });
});
