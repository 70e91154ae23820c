import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import Redis from 'ioredis';
import { aclSetUserArgs, coordinatorAclRules, workerAclRules } from '../../common/acl';
import { makeKeys } from '../../common/keys';
import { TestCluster } from '../support/cluster';
import { makeRows, lossAndDuplicates } from '../support/data';
import { startWorkerProcess, tempDir } from '../support/processes';
import { startRedis, uniquePrefix, type TestRedis } from '../support/redis';

/** The URL of `base` with an ACL user and password in it. */
function asUser(base: string, user: string, password: string): string {
  const u = new URL(base);
  u.username = user;
  u.password = password;
  return u.toString();
}

describe('Redis ACL users generated from makeKeys()', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let admin: Redis;
  let cluster: TestCluster | undefined;
  const prefix = uniquePrefix();
  const keys = makeKeys(prefix);
  const pw = { w1: 'w1-pass-5e4b9c', w2: 'w2-pass-0a7d13', coord: 'co-pass-77c2aa' };

  before(async () => {
    // A private server (never REDIS_URL's): the users created here die with it.
    redis = await startRedis({ appendonly: true });
    admin = new Redis(redis.url);
    for (const [user, password, rules] of [
      ['dstore-worker-w1', pw.w1, workerAclRules(keys, 'w1')],
      ['dstore-worker-w2', pw.w2, workerAclRules(keys, 'w2')],
      ['dstore-coordinator', pw.coord, coordinatorAclRules(keys)],
    ] as const) {
      const [cmd, ...args] = aclSetUserArgs(user, password, [...rules]);
      assert.equal(await admin.call(cmd, ...args), 'OK');
    }
  });

  after(async () => {
    await cluster?.stop();
    admin?.disconnect();
    await redis?.stop();
  });

  it('a coordinator and two workers, each under its own user, ingest and read exactly', async () => {
    cluster = new TestCluster({
      redisUrl: asUser(redis.url, 'dstore-coordinator', pw.coord),
      prefix,
      workers: 0,
      replicas: 2,
    });
    await cluster.start();
    for (const id of ['w1', 'w2'] as const) {
      const dataDir = tempDir(`acl-${id}`);
      const child = startWorkerProcess({
        redisUrl: asUser(redis.url, `dstore-worker-${id}`, pw[id]),
        prefix,
        id,
        dataDir,
        env: { DSTORE_HEARTBEAT_MS: '200', LOG_LEVEL: 'info' },
      });
      cluster.workers.set(id, { id, dataDir, child });
    }
    await cluster.waitLive(['w1', 'w2']);
    assert.equal((await cluster.api('PUT', '/tables/acl', { schema: { n: 'integer', s: 'string' } })).status, 201);
    const rows = makeRows(3000, 5).map((r, i) => ({ _id: r._id, n: i, s: `v${i}` }));
    const post = await cluster.api(
      'POST',
      '/tables/acl/records',
      rows.map((r) => JSON.stringify(r)).join('\n'),
      'application/x-ndjson',
    );
    assert.equal(post.status, 200, JSON.stringify(post.body));
    const got = await cluster.query<{ _id: string }>('acl');
    assert.deepEqual(lossAndDuplicates(rows, got), { lost: 0, duplicated: 0, wrong: 0 });
    const upd = await cluster.api<{ updated: number }>('PATCH', '/tables/acl/records', {
      where: { n: { $lt: 10 } },
      set: { s: 'x' },
    });
    assert.equal(upd.body.updated, 10);
    assert.equal((await cluster.query('acl', { where: { s: 'x' } })).length, 10);
    for (const w of cluster.workers.values())
      assert.doesNotMatch(w.child.tail(200), /NOPERM/, `${w.id} hit an ACL refusal`);
    assert.doesNotMatch(cluster.coordinator.tail(200), /NOPERM/);
  });

  it("a worker's user cannot read another worker's stream, replies, or the catalogue (NOPERM)", async () => {
    const w1 = new Redis(asUser(redis.url, 'dstore-worker-w1', pw.w1), { maxRetriesPerRequest: 0 });
    try {
      // Positive control: its own stream reads fine and holds the SETUP_TABLE and POSTs.
      assert.equal((await w1.xrevrange(keys.workerOps('w1'), '+', '-', 'COUNT', 1)).length, 1);
      const refused: [string, () => Promise<unknown>][] = [
        ["another worker's ops stream", () => w1.xrevrange(keys.workerOps('w2'), '+', '-')],
        ["writing to another worker's ops stream", () => w1.xadd(keys.workerOps('w2'), '*', 'type', 'DROP_TABLE')],
        ['a coordinator reply stream (read)', () => w1.xrevrange(keys.coordReplies('any'), '+', '-')],
        ['the dead-letter stream (read)', () => w1.xrevrange(keys.dead, '+', '-')],
        [
          "another worker's consumer group",
          () => w1.xreadgroup('GROUP', 'apply', 'w1', 'COUNT', 1, 'STREAMS', keys.workerOps('w2'), '0'),
        ],
        ['the table catalogue', () => w1.eval("return redis.call('HGETALL', KEYS[1])", 1, keys.tables)],
        ['the placement records', () => w1.eval("return redis.call('HGETALL', KEYS[1])", 1, keys.chunks)],
        ['a key outside the prefix', () => w1.get('other-app:secret')],
        ['KEYS', () => w1.keys('*')],
        ['FLUSHALL', () => w1.flushall()],
        ["publishing on another worker's fetch channel", () => w1.publish(keys.workerFetch('w2'), '{}')],
      ];
      for (const [what, run] of refused) {
        await assert.rejects(run(), /NOPERM/, `${what} was not refused`);
      }
    } finally {
      w1.disconnect();
    }
  });
});
