import { strict as assert } from 'node:assert';
import { checkMutationCount, checkRead, checkStable, type Problem, type ReadShape } from '../nemesis/checker';
import { Model, type Doc } from '../nemesis/model';

const ALL: ReadShape = { kind: 'rows', where: {} };
const doc = (id: string, fields: Record<string, unknown> = {}): Doc => ({ _id: id, g: 'a', k: 1, v: 0, ...fields });
const kinds = (ps: Problem[]) => ps.map((p) => p.kind).sort();

/** A model holding rows r1..rN, each acknowledged. */
function acked(...docs: Doc[]): Model {
  const m = new Model();
  m.ack(m.begin({ kind: 'insert', docs }));
  return m;
}

describe('unit: nemesis model and checker', () => {
  describe('when every write was acknowledged', () => {
    it('accepts the exact rows', () => {
      const m = acked(doc('r1'), doc('r2', { k: 5 }));
      assert.deepEqual(checkRead(m.now(), ALL, [doc('r2', { k: 5 }), doc('r1')], true), []);
    });

    it('reports a short read (an acknowledged row missing from a complete answer)', () => {
      const m = acked(doc('r1'), doc('r2'));
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('r1')], true)), ['lost']);
    });

    it('excuses the missing row when the answer says it is partial, not a wrong one', () => {
      const m = acked(doc('r1'), doc('r2'));
      assert.deepEqual(checkRead(m.now(), ALL, [doc('r1')], false), []);
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('r1', { v: 9 })], false)), ['wrong']);
    });

    it('reports a stale value (the row before its acknowledged update)', () => {
      const m = acked(doc('r1'), doc('r2'));
      m.ack(m.begin({ kind: 'update', where: { _id: 'r1' }, set: { v: 7 } }));
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('r1'), doc('r2')], true)), ['wrong']);
      assert.deepEqual(checkRead(m.now(), ALL, [doc('r1', { v: 7 }), doc('r2')], true), []);
    });

    it('reports a resurrected row (deleted, and acknowledged so)', () => {
      const m = acked(doc('r1'), doc('r2'));
      m.ack(m.begin({ kind: 'delete', where: { _id: { $in: ['r2'] } } }));
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('r1'), doc('r2')], true)), ['resurrected']);
    });

    it('reports a duplicate row', () => {
      const m = acked(doc('r1'), doc('r2'));
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('r1'), doc('r2'), doc('r1')], true)), ['duplicate']);
    });

    it('checks a GET by _id: a 404 for an acknowledged row is a short read, a 200 for a deleted one a resurrection', () => {
      const m = acked(doc('r1'), doc('r2'));
      m.ack(m.begin({ kind: 'delete', where: { _id: 'r2' } }));
      assert.deepEqual(checkRead(m.now(), { kind: 'get', id: 'r1' }, [doc('r1')], true), []);
      assert.deepEqual(kinds(checkRead(m.now(), { kind: 'get', id: 'r1' }, [], true)), ['lost']);
      assert.deepEqual(checkRead(m.now(), { kind: 'get', id: 'r2' }, [], true), []);
      assert.deepEqual(kinds(checkRead(m.now(), { kind: 'get', id: 'r2' }, [doc('r2')], true)), ['resurrected']);
    });

    it('reports a row that was never written, and one that does not match the filter', () => {
      const m = acked(doc('r1', { g: 'a' }), doc('r2', { g: 'b' }));
      assert.deepEqual(
        kinds(checkRead(m.now(), ALL, [doc('r1', { g: 'a' }), doc('r2', { g: 'b' }), doc('zz')], true)),
        ['resurrected'],
      );
      assert.deepEqual(
        kinds(
          checkRead(m.now(), { kind: 'rows', where: { g: 'a' } }, [doc('r1', { g: 'a' }), doc('r2', { g: 'b' })], true),
        ),
        ['wrong'],
      );
    });
  });

  describe('when writes are in flight or their outcome is unknown', () => {
    it('allows either order of two concurrent updates, and only the later of two sequential ones', () => {
      const m = acked(doc('r1'));
      const a = m.begin({ kind: 'update', where: { _id: 'r1' }, set: { v: 1 } });
      const b = m.begin({ kind: 'update', where: { _id: 'r1' }, set: { v: 2 } });
      m.ack(a);
      m.ack(b);
      assert.deepEqual(checkRead(m.now(), ALL, [doc('r1', { v: 1 })], true), []);
      assert.deepEqual(checkRead(m.now(), ALL, [doc('r1', { v: 2 })], true), []);
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('r1')], true)), ['wrong']);
      m.ack(m.begin({ kind: 'update', where: { _id: 'r1' }, set: { v: 3 } }));
      m.ack(m.begin({ kind: 'update', where: { _id: 'r1' }, set: { v: 4 } }));
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('r1', { v: 3 })], true)), ['wrong']);
    });

    it('lets an indeterminate POST be present or absent, but never half-updated by a write it missed', () => {
      const m = acked(doc('r1'));
      const p = m.begin({ kind: 'insert', docs: [doc('n1'), doc('n2')] });
      m.indeterminate(p);
      assert.deepEqual(checkRead(m.now(), ALL, [doc('r1')], true), []);
      assert.deepEqual(checkRead(m.now(), ALL, [doc('r1'), doc('n1'), doc('n2')], true), []);
      // It may still commit after a later delete: its rows may come back.
      m.ack(m.begin({ kind: 'delete', where: { _id: 'n1' } }));
      assert.deepEqual(checkRead(m.now(), ALL, [doc('r1'), doc('n1')], true), []);
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('r1'), doc('n1', { v: 5 })], true)), ['wrong']);
    });

    it('treats a rejected POST as never stored', () => {
      const m = acked(doc('r1'));
      const p = m.begin({ kind: 'insert', docs: [doc('n1')] });
      m.reject(p);
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('r1'), doc('n1')], true)), ['resurrected']);
    });

    it('lets a read show a write that was acknowledged while it ran, or not', () => {
      const m = acked(doc('r1'));
      const obs = m.observe();
      m.ack(m.begin({ kind: 'insert', docs: [doc('n1')] }));
      m.ack(m.begin({ kind: 'update', where: { _id: 'r1' }, set: { v: 8 } }));
      const during = m.close(obs);
      assert.deepEqual(checkRead(during, ALL, [doc('r1')], true), []);
      assert.deepEqual(checkRead(during, ALL, [doc('r1', { v: 8 }), doc('n1')], true), []);
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('r1', { v: 8 })], true)), ['lost']);
    });

    it('lets an update still pending apply to rows inserted after it began', () => {
      const m = new Model();
      const u = m.begin({ kind: 'update', where: { g: 'a' }, set: { v: 4 } });
      m.ack(m.begin({ kind: 'insert', docs: [doc('n1')] }));
      m.ack(u);
      assert.deepEqual(checkRead(m.now(), ALL, [doc('n1')], true), []);
      assert.deepEqual(checkRead(m.now(), ALL, [doc('n1', { v: 4 })], true), []);
    });

    it('stays sound once a row has too many worlds to track', () => {
      const m = new Model({ maxWorlds: 8 });
      m.ack(m.begin({ kind: 'insert', docs: [doc('r1')] }));
      const ops = [1, 2, 3, 4, 5].map((v) => m.begin({ kind: 'update', where: { _id: 'r1' }, set: { v } }));
      for (const op of ops) m.ack(op);
      for (const v of [1, 2, 3, 4, 5]) assert.deepEqual(checkRead(m.now(), ALL, [doc('r1', { v })], true), []);
      assert.equal(m.stats().approxRows, 1);
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [], true)), ['lost']);
    });

    it('refuses writes that break its rules', () => {
      const m = acked(doc('r1'));
      assert.throws(() => m.begin({ kind: 'insert', docs: [doc('r1')] }), /inserted twice/);
      m.begin({ kind: 'update', where: { g: 'a' }, set: { v: 1 } });
      assert.throws(() => m.begin({ kind: 'update', where: { _id: 'r1' }, set: { g: 'b' } }), /filter/);
    });
  });

  describe('sorted reads, counts and settling', () => {
    const sorted = (limit: number): ReadShape => ({
      kind: 'sorted',
      where: {},
      sort: [
        { field: 'k', dir: 'asc' },
        { field: '_id', dir: 'asc' },
      ],
      limit,
    });

    it('accepts a valid prefix and reports a gap before the last row, or rows out of order', () => {
      const m = acked(doc('a', { k: 1 }), doc('b', { k: 2 }), doc('c', { k: 3 }));
      assert.deepEqual(checkRead(m.now(), sorted(2), [doc('a', { k: 1 }), doc('b', { k: 2 })], true), []);
      assert.deepEqual(kinds(checkRead(m.now(), sorted(2), [doc('a', { k: 1 }), doc('c', { k: 3 })], true)), ['lost']);
      assert.deepEqual(kinds(checkRead(m.now(), sorted(2), [doc('b', { k: 2 }), doc('a', { k: 1 })], true)), ['order']);
      assert.deepEqual(kinds(checkRead(m.now(), sorted(5), [doc('a', { k: 1 }), doc('b', { k: 2 })], true)), ['lost']);
    });

    it('bounds counts and group counts by the definite and the possible rows', () => {
      const m = acked(doc('a', { g: 'x' }), doc('b', { g: 'y' }));
      m.indeterminate(m.begin({ kind: 'insert', docs: [doc('c', { g: 'x' })] }));
      const count: ReadShape = { kind: 'count', where: {} };
      assert.deepEqual(checkRead(m.now(), count, [{ count: 2 }], true), []);
      assert.deepEqual(checkRead(m.now(), count, [{ count: 3 }], true), []);
      assert.deepEqual(kinds(checkRead(m.now(), count, [{ count: 1 }], true)), ['count']);
      assert.deepEqual(kinds(checkRead(m.now(), count, [{ count: 4 }], true)), ['count']);
      const group: ReadShape = { kind: 'group', where: {}, by: 'g' };
      assert.deepEqual(
        checkRead(
          m.now(),
          group,
          [
            { g: 'x', count: 2 },
            { g: 'y', count: 1 },
          ],
          true,
        ),
        [],
      );
      assert.deepEqual(kinds(checkRead(m.now(), group, [{ g: 'x', count: 1 }], true)), ['lost']);
      assert.deepEqual(
        kinds(
          checkRead(
            m.now(),
            group,
            [
              { g: 'x', count: 1 },
              { g: 'x', count: 1 },
              { g: 'y', count: 1 },
            ],
            true,
          ),
        ),
        ['duplicate'],
      );
    });

    it('bounds the count an UPDATE answers', () => {
      const m = acked(doc('a'), doc('b'));
      const op = m.begin({ kind: 'update', where: {}, set: { v: 1 } });
      const before = m.close(m.observe(op));
      assert.deepEqual(checkMutationCount(before, {}, 2, true, 'UPDATE'), []);
      assert.deepEqual(kinds(checkMutationCount(before, {}, 3, true, 'UPDATE')), ['count']);
      assert.deepEqual(kinds(checkMutationCount(before, {}, 1, true, 'UPDATE')), ['count']);
      assert.deepEqual(checkMutationCount(before, {}, 1, false, 'UPDATE'), []);
    });

    it('takes a settled read as the truth, and compares two settled reads', () => {
      const m = acked(doc('a'));
      m.indeterminate(m.begin({ kind: 'insert', docs: [doc('b')] }));
      m.settle(new Map([['a', doc('a')]]));
      assert.deepEqual(kinds(checkRead(m.now(), ALL, [doc('a'), doc('b')], true)), ['resurrected']);
      assert.deepEqual(checkStable([doc('a')], [doc('a')]), []);
      assert.deepEqual(kinds(checkStable([doc('a')], [doc('a', { v: 1 })])), ['unstable']);
      assert.throws(() => {
        m.begin({ kind: 'insert', docs: [doc('c')] });
        m.settle(new Map());
      }, /unanswered/);
    });

    it('reports a POST whose answer was lost and that is stored in part', () => {
      const m = new Model();
      m.indeterminate(m.begin({ kind: 'insert', docs: [doc('a'), doc('b'), doc('c')] }));
      assert.deepEqual(m.settle(new Map([['a', doc('a')]])).length, 1);
      const n = new Model();
      n.indeterminate(n.begin({ kind: 'insert', docs: [doc('a'), doc('b')] }));
      n.ack(n.begin({ kind: 'delete', where: { _id: 'b' } }));
      assert.deepEqual(n.settle(new Map([['a', doc('a')]])), [], 'b may have been deleted');
    });

    it('after a faulty settled read, lets the rows it got wrong be either way', () => {
      const m = acked(doc('a'), doc('b'));
      m.settle(new Map([['a', doc('a')]]), new Set(['b']));
      assert.deepEqual(checkRead(m.now(), ALL, [doc('a')], true), []);
      assert.deepEqual(checkRead(m.now(), ALL, [doc('a'), doc('b')], true), []);
    });
  });
});
