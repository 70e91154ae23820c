import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { checkRecordShape } from '../../coordinator/limits';

/** Depth by plain recursion: the reference the iterative check (and its flat fast path) must agree with. */
function depth(v: unknown): number {
  if (v === null || typeof v !== 'object') return 0;
  return 1 + Math.max(0, ...(Array.isArray(v) ? v : Object.values(v)).map(depth));
}

const badName = (n: string) => n === '' || n.length > 256 || /[\u0000-\u001f\u007f]/.test(n) || n.startsWith('$');

describe('checkRecordShape (DSTORE_MAX_DEPTH, field names)', () => {
  it('accepts a record exactly when every field nests within maxDepth and every name is good', () => {
    const value = fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: 'small' },
        fc.integer(),
        fc.constant(null),
        fc.string(),
        fc.array(tie('v'), { maxLength: 3 }),
        fc.dictionary(fc.string(), tie('v'), { maxKeys: 3 }),
      ),
    })).v;
    const name = fc.oneof(fc.constantFrom('a', 'b', 'geo', '$x', '', 'c\u0001'), fc.string());
    fc.assert(
      fc.property(fc.dictionary(name, value, { maxKeys: 5 }), fc.integer({ min: 1, max: 4 }), (rec, maxDepth) => {
        const ok = Object.entries(rec).every(([k, v]) => (k === '_id' || !badName(k)) && depth(v) <= maxDepth);
        let threw = false;
        try {
          checkRecordShape(rec, { maxFields: 100, maxDepth });
        } catch {
          threw = true;
        }
        assert.equal(!threw, ok, JSON.stringify({ rec, maxDepth }));
      }),
      { seed: 6, numRuns: 2000 },
    );
  });

  it('still refuses a bad name after many rows with good ones', () => {
    for (let i = 0; i < 100; i++) checkRecordShape({ a: i, b: { c: 1 } }, { maxFields: 10, maxDepth: 2 });
    assert.throws(() => checkRecordShape({ a: 1, $b: 2 }, { maxFields: 10, maxDepth: 2 }), /field name "\$b"/);
    assert.throws(() => checkRecordShape({ a: { b: { c: {} } } }, { maxFields: 10, maxDepth: 2 }), /DSTORE_MAX_DEPTH/);
  });
});
