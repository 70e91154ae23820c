import { strict as assert } from 'node:assert';
import { replicasAt, type HeldChunk } from '../../worker/shard-store';

describe('replicasAt: the replica list a read of one generation uses', () => {
  const never: HeldChunk = { chunk: 'c', replicas: ['w1', 'w2'], since: '0-0' };
  const once: HeldChunk = { chunk: 'c', replicas: ['w3', 'w2'], since: '200-0', prev: ['w1', 'w2'], prevSince: '0-0' };
  const twice: HeldChunk = { chunk: 'c', replicas: ['w3', 'w4'], since: '300-1', prev: ['w3', 'w2'], prevSince: '200-0' };

  it('gives the only list of a chunk that never moved, to any read', () => {
    assert.deepEqual(replicasAt(never, '5-0'), ['w1', 'w2']);
    assert.deepEqual(replicasAt(never, undefined), ['w1', 'w2']);
  });

  it('gives the new list from the move on and the previous one before it', () => {
    assert.deepEqual(replicasAt(once, '200-0'), ['w3', 'w2']);
    assert.deepEqual(replicasAt(once, '1000-0'), ['w3', 'w2']);
    assert.deepEqual(replicasAt(once, '199-9'), ['w1', 'w2']);
  });

  it('compares generations as stream ids, not as text', () => {
    assert.deepEqual(replicasAt(twice, '300-0'), ['w3', 'w2']);
    assert.deepEqual(replicasAt(twice, '1000-0'), ['w3', 'w4'], '"1000-0" sorts before "300-1" as text');
  });

  it('has no answer for a read older than both lists (the worker answers stale)', () => {
    assert.equal(replicasAt(twice, '199-0'), undefined);
    const copied: HeldChunk = { chunk: 'c', replicas: ['w1', 'w2', 'w5'], since: '200-0' };
    assert.equal(replicasAt(copied, '100-0'), undefined, 'a moved copy cannot answer reads older than its list');
  });

  it('uses the newest list for a read without a generation', () => {
    assert.deepEqual(replicasAt(twice, undefined), ['w3', 'w4']);
  });
});
