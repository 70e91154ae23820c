import { strict as assert } from 'node:assert';
import { nextStreamId, parseDeadLetterLimit, renderDeadLetters } from '../../cli/commands/dead-letters';
import { CliError } from '../../cli/http-client';
import { requiredAccess } from '../../coordinator/api/auth';
import type { DeadLetterPage } from '../../coordinator/dead-letters';

const at = new Date(2024, 4, 1, 13, 4, 5).getTime();
const page: DeadLetterPage = {
  total: 7,
  deadLetters: [
    {
      id: `${at}-1`,
      stream: 'dstore:worker:{w1}:ops',
      entryId: '1714-0',
      worker: 'w1',
      reason: 'chunk C has 2 ids but 3 rows',
      type: 'POST',
      at,
    },
    {
      id: `${at}-0`,
      stream: 'dstore:worker:{w2}:ops',
      entryId: '1713-5',
      worker: 'w2',
      reason: 'unknown message type "(none)"',
      type: null,
      at,
    },
  ],
};

describe('dstore dead-letters', () => {
  it('lists them as an aligned table under a count, saying when more exist', () => {
    assert.deepEqual(renderDeadLetters(page, 200), [
      '7 dead letter(s); the newest 2 shown (more with --limit)',
      'id               time                 worker  type  entry   reason',
      `${at}-1  2024-05-01 13:04:05  w1      POST  1714-0  chunk C has 2 ids but 3 rows`,
      `${at}-0  2024-05-01 13:04:05  w2      -     1713-5  unknown message type "(none)"`,
    ]);
    assert.equal(renderDeadLetters({ ...page, total: 2 })[0], '2 dead letter(s)');
    assert.deepEqual(renderDeadLetters({ total: 0, deadLetters: [] }), ['no dead letters']);
  });

  it('cuts the table to the terminal width', () => {
    for (const line of renderDeadLetters(page, 60)) assert.ok(line.length <= 60, line);
  });

  it('takes --limit from 1 to 1000 and names the flag otherwise', () => {
    assert.equal(parseDeadLetterLimit('1000'), 1000);
    for (const bad of ['0', '1001', '-1', '1.5', 'ten', '']) {
      assert.throws(
        () => parseDeadLetterLimit(bad),
        (e: unknown) => e instanceof CliError && /^--limit must be a whole number from 1 to 1000, got /.test(e.message),
      );
    }
  });

  it('clears up to the newest entry it counted, and no further', () => {
    assert.equal(nextStreamId('1700000000000-0'), '1700000000000-1');
    assert.equal(nextStreamId('1700000000000-18446744073709551614'), '1700000000000-18446744073709551615');
    assert.equal(nextStreamId('5'), '5-1');
  });

  it('reaches routes that need the admin role', () => {
    assert.equal(requiredAccess('GET', '/admin/dead-letters', '/admin/dead-letters?limit=5'), 'admin');
    assert.equal(requiredAccess('DELETE', '/admin/dead-letters', '/admin/dead-letters'), 'admin');
  });
});
