import { strict as assert } from 'node:assert';
import type { RefusalCode } from '../../common/errors';
import { ApiError } from '../../coordinator/errors';
import { refusalError } from '../../coordinator/refusals';

const ack = (error: string, code?: RefusalCode, row?: number) => ({ worker: 'w2', chunk: 'C1', error, code, row });
// The chunk holds request rows 101..200.
const chunk = { rows: 100, firstRow: 101 };

describe('refusalError: a worker refusing a chunk, as the HTTP answer', () => {
  it('duplicate-id is a 409 naming the request row and the _id, keeping the words "duplicate _id"', () => {
    const e = refusalError(ack('duplicate _id "k7" in table t (row 50 of chunk C1)', 'duplicate-id', 50), chunk);
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 409);
    assert.equal(e.code, 'conflict');
    assert.equal(
      e.message,
      'row 150: duplicate _id "k7" in table t (row 50 of chunk C1); nothing of this request was stored',
    );
    assert.deepEqual(e.details, { worker: 'w2', row: 150, field: '_id' });
  });

  it('bad-input is a 400 naming the rows of the chunk (or the row, when the worker names one)', () => {
    const e = refusalError(ack('chunk C1 has 100 ids but 1000 rows', 'bad-input'), chunk);
    assert.equal(e.status, 400);
    assert.equal(e.code, 'bad_request');
    assert.match(
      e.message,
      /^rows 101-200: worker w2 refused chunk C1: chunk C1 has 100 ids but 1000 rows; nothing of this request was stored/,
    );
    assert.deepEqual(e.details, { worker: 'w2', row: 101 });
    assert.match(refusalError(ack('bad', 'bad-input', 3), chunk).message, /^row 103: /);
    assert.match(
      refusalError(ack('bad', 'bad-input'), { rows: 5 }).message,
      /^a chunk: worker w2 refused chunk C1: bad/,
    );
  });

  it('aborted and storage are a 503 asking to send the request again; internal is a 500', () => {
    const aborted = refusalError(ack('chunk C1 belongs to POST P, which was aborted', 'aborted'), chunk);
    assert.equal(aborted.status, 503);
    assert.match(aborted.message, /which was aborted; nothing of this request was stored, send it again$/);
    const storage = refusalError(ack('database or disk is full', 'storage'), chunk);
    assert.equal(storage.status, 503);
    assert.match(storage.message, /disk is full; .*check its disk and log/);
    const internal = refusalError(ack('failed after 5 attempts: boom', 'internal'), chunk);
    assert.equal(internal.status, 500);
    assert.equal(internal.code, 'write_failed');
    assert.match(internal.message, /^worker w2 refused chunk C1: failed after 5 attempts: boom/);
  });

  it('an ack without a code is a 500 whatever its text says: only the code decides', () => {
    const dup = refusalError(ack('duplicate _id "k7" in table t (row 50 of chunk C1)'), chunk);
    assert.equal(dup.status, 500);
    assert.equal(dup.code, 'write_failed');
  });
});
