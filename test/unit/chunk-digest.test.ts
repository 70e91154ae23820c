import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import fc from 'fast-check';
import { DIGEST_EMPTY, digestVersion } from '../../common/messages';
import { ChunkDigest } from '../../worker/chunk-digest';

/** The d2 digest, by its definition: SHA-1 of the rows sorted by `_id`, each `id \0 doc \n`. */
function reference(rows: [string, string][]): string {
  const sorted = [...rows].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const h = crypto.createHash('sha1');
  for (const [id, doc] of sorted) h.update(`${id}\0${doc}\n`);
  return rows.length === 0 ? DIGEST_EMPTY : `d2:${rows.length}:${h.digest('hex').slice(0, 16)}`;
}

describe('ChunkDigest', () => {
  it('of no rows is DIGEST_EMPTY: the digest of a chunk held empty', () => {
    assert.equal(new ChunkDigest().toString(), DIGEST_EMPTY);
  });

  it('does not depend on row order, and sees a changed value or a missing row', () => {
    const rows: [string, string][] = [
      ['a', '{"_id":"a","v":1}'],
      ['b', '{"_id":"b","v":2}'],
      ['c', '{"_id":"c","v":3}'],
    ];
    const of = (rs: [string, string][]) => rs.reduce((d, [id, doc]) => d.add(id, doc), new ChunkDigest()).toString();
    assert.equal(of(rows), of([...rows].reverse()));
    assert.notEqual(of(rows), of([rows[0], rows[1], ['c', '{"_id":"c","v":4}']]));
    assert.notEqual(of(rows), of(rows.slice(0, 2)));
    // `_id`s hold no control characters (common/names.ts), so `\0` ends each id unambiguously.
  });

  it('names its version, and tells the first version apart', () => {
    const d = new ChunkDigest().add('a', '{}').toString();
    assert.match(d, /^d2:1:[0-9a-f]{16}$/);
    assert.equal(digestVersion(d), 'd2');
    assert.equal(digestVersion('3:00000000deadbeef'), 'd1');
  });

  it('equals its definition for any rows with distinct _ids', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(fc.string(), fc.string()), { maxLength: 300, selector: (r) => r[0] }),
        (rows) => {
          const d = new ChunkDigest();
          for (const [id, doc] of rows) d.add(id, doc);
          assert.equal(d.toString(), reference(rows));
        },
      ),
      { seed: 11, numRuns: 200 },
    );
  });
});
