/** The change stream's formats and settings (common/changes.ts). */
import { strict as assert } from 'node:assert';
import {
  DEFAULT_CHANGE_RETENTION,
  parseChanges,
  parseToken,
  stagedEvent,
  storedRowId,
  tokenOf,
  trimArgs,
} from '../../common/changes';

describe('change streams: formats', () => {
  it('reads the changes setting of a table, naming what is wrong', () => {
    assert.deepEqual(parseChanges(true), DEFAULT_CHANGE_RETENTION);
    assert.equal(parseChanges(false), false);
    assert.deepEqual(parseChanges({ maxAgeMs: 60_000 }), { maxAgeMs: 60_000 });
    assert.deepEqual(parseChanges({}), DEFAULT_CHANGE_RETENTION);
    assert.throws(() => parseChanges('yes'), /must be true, false or \{"maxEntries"/);
    assert.throws(() => parseChanges({ maxEntries: 5 }), /maxEntries must be a whole number from 100/);
    assert.throws(() => parseChanges({ keep: 1 }), /unknown key "keep"; it takes maxEntries, maxAgeMs/);
  });

  it('round-trips tokens and refuses anything else', () => {
    assert.deepEqual(parseToken(tokenOf('1700000000000-3', 42)), { id: '1700000000000-3', n: 42 });
    assert.equal(parseToken('1700000000000-3'), undefined);
    assert.equal(parseToken('x.1'), undefined);
  });

  it('trims by entries and by age', () => {
    assert.deepEqual(trimArgs({ maxEntries: 1000 }, 5_000), ['1000', '']);
    assert.deepEqual(trimArgs({ maxAgeMs: 2_000 }, 5_000), ['0', '3000-0']);
  });

  it('stages events a Lua script can split: no raw separator in JSON text or an _id', () => {
    const e = stagedEvent('update', 'a-1', '{"_id":"a-1","s":"x\\u001fy"}');
    assert.equal(e.split('\x1f').length, 3);
    assert.equal(stagedEvent('delete', 'a-1'), 'delete\x1fa-1\x1f');
    assert.equal(storedRowId('{"_id":"a\\"b","x":1}'), 'a"b');
  });
});
