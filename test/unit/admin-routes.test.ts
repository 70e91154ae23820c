import { strict as assert } from 'node:assert';
import { boardTitle } from '../../coordinator/api/admin-routes';
import { checkLimit } from '../../coordinator/api/query-routes';
import { ApiError } from '../../coordinator/errors';

describe('coordinator api: names and caps', () => {
  it('titles the queue dashboard with the prefix once', () => {
    assert.equal(boardTitle('dstore'), 'dstore', 'the default prefix is not repeated');
    assert.equal(boardTitle('acme-prod'), 'dstore · acme-prod');
  });

  it('caps limit by DSTORE_MAX_RESULT_ROWS alone, with one message naming it', () => {
    checkLimit(undefined, 10);
    checkLimit(10, 10);
    for (const limit of [11, 100_000_001]) {
      assert.throws(
        () => checkLimit(limit, 10),
        (e: unknown) =>
          e instanceof ApiError &&
          e.status === 400 &&
          e.code === 'limit_exceeded' &&
          e.message ===
            `limit ${limit} is over DSTORE_MAX_RESULT_ROWS (10), the most rows one answer may hold; page with a smaller limit, each page ending with {"_next": cursor} to send back as "cursor" (dstore fetch --all)` &&
          JSON.stringify(e.details) ===
            JSON.stringify({ limit: 'DSTORE_MAX_RESULT_ROWS', field: 'limit', value: limit, max: 10 }),
      );
    }
  });
});
