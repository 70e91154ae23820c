import { strict as assert } from 'node:assert';
import { makeKeys } from '../../common/keys';
import { createRedis, type DstoreRedis } from '../../common/redis';
import { ScriptError, SCRIPT_CODES } from '../../common/script-codes';
import { readChunkRecord, setReplicas } from '../../coordinator/placement';
import { sharedRedis, uniquePrefix } from '../support/redis';
import type { CoordinatorContext } from '../../coordinator/context';
import { moveChunk } from '../../coordinator/jobs/move';

/**
 * set-placement.lua: a chunk's replica list changes only if the record is still the one
 * read, so two jobs acting on one chunk never overwrite each other (the nemesis saw a
 * repair and a move bounce a chunk's copies between workers until none held it).
 */
describe('setReplicas: compare-and-set of a placement record', function () {
  this.timeout(30_000);
  let cmd: DstoreRedis;
  const keys = makeKeys(uniquePrefix());
  const chunk = '01J0000000000000000000000C';
  const record = { table: 't', post: '01J0000000000000000000000P', replicas: ['w1', 'w2'], rows: 3 };

  before(async () => {
    const redis = await sharedRedis();
    cmd = createRedis({ url: redis.url, name: `${keys.prefix}:cas`, role: 'command' });
  });
  after(() => cmd.disconnect());

  beforeEach(async () => {
    await cmd.del(keys.chunks, keys.draining, keys.retired, keys.underReplicated, keys.placementVersion('t'));
    await cmd.del(keys.workerChunks('w1'), keys.workerChunks('w2'), keys.workerChunks('w3'));
    await cmd.hset(keys.chunks, chunk, JSON.stringify(record));
    await cmd.sadd(keys.workerChunks('w1'), chunk);
    await cmd.sadd(keys.workerChunks('w2'), chunk);
    await cmd.zadd(keys.underReplicated, 1, chunk);
  });

  const code = (e: unknown) => (e instanceof ScriptError ? e.code : e);

  it('moves the chunk between the workers’ sets, bumps the version and clears under-replicated', async () => {
    const read = (await readChunkRecord(cmd, keys, chunk))!;
    await setReplicas(cmd, keys, chunk, read, ['w1', 'w3'], 'clear');
    assert.deepEqual(JSON.parse((await cmd.hget(keys.chunks, chunk))!), { ...record, replicas: ['w1', 'w3'] });
    assert.deepEqual(await cmd.smembers(keys.workerChunks('w2')), []);
    assert.deepEqual(await cmd.smembers(keys.workerChunks('w3')), [chunk]);
    assert.deepEqual(await cmd.smembers(keys.workerChunks('w1')), [chunk]);
    assert.equal(await cmd.get(keys.placementVersion('t')), '1');
    assert.equal(await cmd.zscore(keys.underReplicated, chunk), null);
  });

  it('refuses a record that changed since it was read, and changes nothing', async () => {
    const first = (await readChunkRecord(cmd, keys, chunk))!;
    const second = (await readChunkRecord(cmd, keys, chunk))!;
    await setReplicas(cmd, keys, chunk, first, ['w1', 'w3'], 'keep');
    await assert.rejects(setReplicas(cmd, keys, chunk, second, ['w2', 'w3'], 'clear'), (e) => {
      assert.equal(code(e), SCRIPT_CODES.RECORD_CHANGED);
      return true;
    });
    assert.deepEqual(JSON.parse((await cmd.hget(keys.chunks, chunk))!).replicas, ['w1', 'w3']);
    assert.deepEqual(await cmd.smembers(keys.workerChunks('w2')), []);
    assert.equal(await cmd.zscore(keys.underReplicated, chunk), '1', "'keep' left the entry");
  });

  it('a planned move whose target got a copy meanwhile (a repair) leaves the chunk as it is', async () => {
    // Before, the move went ahead without a target and dropped `from`: one copy fewer, unrecorded.
    await cmd.hset(keys.chunks, chunk, JSON.stringify({ ...record, replicas: ['w1', 'w3'] }));
    const ctx = { cmd, keys } as unknown as CoordinatorContext;
    const out = await moveChunk(ctx, chunk, 'w1', 'w3', 1000);
    assert.equal(out.status, 'target-gone');
    assert.deepEqual(JSON.parse((await cmd.hget(keys.chunks, chunk))!).replicas, ['w1', 'w3']);
    assert.deepEqual(await cmd.smembers(keys.workerChunks('w1')), [chunk]);
  });

  for (const state of ['draining', 'retired'] as const) {
    it(`refuses to add a ${state} worker, and changes nothing`, async () => {
      await cmd.hset(keys[state], 'w3', '{}');
      const read = (await readChunkRecord(cmd, keys, chunk))!;
      await assert.rejects(setReplicas(cmd, keys, chunk, read, ['w1', 'w3'], 'clear'), (e) => {
        assert.equal(code(e), SCRIPT_CODES.TARGET_UNAVAILABLE);
        return true;
      });
      assert.equal(await cmd.hget(keys.chunks, chunk), read.raw);
      assert.equal(await cmd.get(keys.placementVersion('t')), null);
      // A worker already named may stay even while draining: its copy moves off later.
      await setReplicas(cmd, keys, chunk, read, ['w1'], { dueMs: 5 });
      assert.equal(await cmd.zscore(keys.underReplicated, chunk), '5');
    });
  }
});
