import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { isNarrowRead, type TableIndexes } from '../../common/indexes';
import type { TablePlacement } from '../../coordinator/placement';
import { Outstanding, ReadPlan, type ReadPlanDeps } from '../../coordinator/read-plan';
import { placeChunk } from '../../coordinator/token-ring';

/** A placement as the token ring makes it: chunk i on R consecutive workers from the token. */
function ringPlacement(workers: string[], chunks: number, r: number, version = '1'): TablePlacement {
  const map = new Map<string, string[]>();
  for (let i = 0; i < chunks; i++) map.set(`c${String(i).padStart(4, '0')}`, placeChunk(workers, i, r));
  return { version, chunks: map };
}

function plan(placement: TablePlacement, live: string[], narrow: boolean, outstanding = new Outstanding()): ReadPlan {
  // assign() reads only the placement, the live set and the outstanding work.
  const deps = { outstanding } as unknown as ReadPlanDeps;
  return new ReadPlan(deps, 't', live, placement, false, undefined, { narrow });
}

/** Every chunk of the placement exactly once, each on a live worker that holds it. */
function assertExact(p: TablePlacement, live: string[], a: { worker: string; chunks: readonly string[] }[]): void {
  const seen = new Map<string, number>();
  for (const { worker, chunks } of a)
    for (const c of chunks) {
      assert.ok(live.includes(worker), `${worker} is not live`);
      assert.ok(p.chunks.get(c)!.includes(worker), `${worker} does not hold ${c}`);
      seen.set(c, (seen.get(c) ?? 0) + 1);
    }
  assert.equal(seen.size, p.chunks.size, 'every chunk assigned');
  assert.ok(
    [...seen.values()].every((n) => n === 1),
    'each chunk once',
  );
}

describe('ReadPlan: which workers a read asks', () => {
  const W4 = ['w1', 'w2', 'w3', 'w4'];

  it('a narrow read at R = 2 on 4 workers asks 2 of them, each for every chunk it holds, and shares reads between the pairs', () => {
    const p = ringPlacement(W4, 1001, 2);
    const pairs = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const a = plan(p, W4, true).assign([...p.chunks.keys()]);
      assertExact(p, W4, a);
      assert.equal(a.length, 2);
      const key = a
        .map((x) => x.worker)
        .sort()
        .join('+');
      pairs.set(key, (pairs.get(key) ?? 0) + 1);
    }
    assert.deepEqual([...pairs.keys()].sort(), ['w1+w3', 'w2+w4']);
    for (const n of pairs.values()) assert.ok(n > 50, `pairs shared the reads: ${JSON.stringify([...pairs])}`);
  });

  it('prefers the cover whose workers have the fewest reads in flight', () => {
    const p = ringPlacement(W4, 100, 2);
    const busy = new Outstanding();
    busy.add(['w1'], 1);
    for (let i = 0; i < 20; i++)
      assert.deepEqual(
        plan(p, W4, true, busy)
          .assign([...p.chunks.keys()])
          .map((x) => x.worker)
          .sort(),
        ['w2', 'w4'],
      );
  });

  it('an ordinary read spreads over every worker', () => {
    const p = ringPlacement(W4, 1000, 2);
    const a = plan(p, W4, false).assign([...p.chunks.keys()]);
    assertExact(p, W4, a);
    assert.equal(a.length, 4);
  });

  it('is exact for any ring, replication factor and live set (a down worker needs a bigger cover)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 0, max: 8 }),
        (n, r, chunks, down) => {
          const workers = Array.from({ length: n }, (_, i) => `w${i}`);
          const p = ringPlacement(workers, chunks, Math.min(r, n));
          const live = workers.filter((_, i) => i !== down || n === 1 || r === 1);
          for (const narrow of [true, false]) {
            const a = plan(p, live, narrow).assign([...p.chunks.keys()]);
            assertExact(p, live, a);
            if (narrow && live.length === n)
              assert.ok(a.length <= Math.ceil(n / Math.min(r, n)) + 1, `${a.length} workers`);
          }
        },
      ),
      { seed: 17, numRuns: 300 },
    );
  });
});

describe('isNarrowRead', () => {
  const ix: TableIndexes = {
    version: 1,
    indexes: { ix_cat_city: { fields: ['cat', 'city'] }, ix_amount: { fields: ['amount'] } },
  };

  it('is true where an index (or _id) bounds what each shard reads', () => {
    for (const q of [
      { where: { cat: 'c1', city: 'Oslo' } },
      { where: { amount: { $gte: 5, $lt: 9 } } },
      { where: { cat: { $in: ['a', 'b'] } }, groupBy: ['city'], aggregate: [{ op: 'count' as const }] },
      { where: { n: 3 }, sort: [{ field: 'amount', dir: 'desc' as const }], limit: 10 },
      { limit: 100 },
      { sort: [{ field: '_id', dir: 'asc' as const }], limit: 5 },
    ])
      assert.equal(isNarrowRead(q, ix), true, JSON.stringify(q));
  });

  it('is false for scans: no index term, a term under OR, a non-leading field, an unbounded sort', () => {
    for (const q of [
      {},
      { where: { n: 3 } },
      { where: { city: 'Oslo' } },
      { where: { $or: [{ cat: 'a' }, { n: 1 }] } },
      { sort: [{ field: 'n', dir: 'asc' as const }], limit: 10 },
      { sort: [{ field: 'amount', dir: 'asc' as const }] },
      { aggregate: [{ op: 'count' as const }], limit: 5 },
    ])
      assert.equal(isNarrowRead(q, ix), false, JSON.stringify(q));
    assert.equal(isNarrowRead({ where: { cat: 'a' } }, undefined), false, 'no indexes');
  });
});
