import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import fc from 'fast-check';
import { DIGEST_EMPTY } from '../../common/messages';
import { ChunkDigest } from '../../worker/chunk-digest';

/** The digest as first defined: BigInt sum mod 2^64 of the first 8 bytes of SHA-1 of `id \0 doc`. */
function reference(rows: [string, string][]): string {
  let sum = 0n;
  for (const [id, doc] of rows)
    sum = (sum + crypto.createHash('sha1').update(`${id}\0${doc}`).digest().readBigUInt64BE(0)) & ((1n << 64n) - 1n);
  return `${rows.length}:${sum.toString(16).padStart(16, '0')}`;
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
  });

  it('equals the BigInt definition for any rows (stored digests stay comparable)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string(), fc.string()), { maxLength: 300 }), (rows) => {
        const d = new ChunkDigest();
        for (const [id, doc] of rows) d.add(id, doc);
        assert.equal(d.toString(), reference(rows));
      }),
      { seed: 11, numRuns: 200 },
    );
  });
});
