import calculateSlot from 'cluster-key-slot';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCommonOptions, loadWorkerOptions } from '../../common/config';
import { ConfigError } from '../../common/errors';
import { makeKeys } from '../../common/keys';
import { assertName } from '../../common/names';
import { SETTINGS } from '../../common/settings';
import { compareStreamIds } from '../../common/stream-ids';

describe('config', () => {
  it('gives documented defaults when nothing is set', () => {
    const o = loadWorkerOptions({});
    assert.equal(o.redisUrl, 'redis://127.0.0.1:6379');
    assert.equal(o.prefix, 'dstore');
    assert.equal(o.heartbeatMs, 1000);
    assert.equal(o.sqliteSync, 'full');
    assert.equal(o.workerId, undefined);
  });

  const bad: [Record<string, string>, string, RegExp][] = [
    [{ DSTORE_HEARTBEAT_MS: 'soon' }, 'DSTORE_HEARTBEAT_MS', /whole number/],
    [{ DSTORE_HEARTBEAT_MS: '5' }, 'DSTORE_HEARTBEAT_MS', /between 50 and/],
    [{ REDIS_URL: 'http://x' }, 'REDIS_URL', /redis:\/\//],
    [{ REDIS_URL: '::' }, 'REDIS_URL', /not a URL/],
    [{ DSTORE_PREFIX: 'a:b' }, 'DSTORE_PREFIX', /letters/],
    [{ DSTORE_WORKER_ID: 'no spaces' }, 'DSTORE_WORKER_ID', /letters/],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL', /one of/],
    [{ DSTORE_SQLITE_SYNC: 'off' }, 'DSTORE_SQLITE_SYNC', /full, normal/],
  ];
  for (const [env, variable, re] of bad) {
    it(`names ${variable} when it is wrong (${JSON.stringify(env)})`, () => {
      assert.throws(
        () => loadWorkerOptions(env),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.variable === variable &&
          e.message.startsWith(`${variable}: `) &&
          re.test(e.message),
      );
    });
  }

  it('reads rediss:// URLs with credentials', () => {
    assert.equal(loadCommonOptions({ REDIS_URL: 'rediss://u:p@h:6380/2' }).redisUrl, 'rediss://u:p@h:6380/2');
  });

  it('documents every DSTORE_ setting the code reads in the README', () => {
    const root = path.resolve(__dirname, '..', '..', '..');
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const source = ['config.ts', 'settings.ts']
      .map((f) => fs.readFileSync(path.join(root, 'common', f), 'utf8'))
      .join('\n');
    const read = new Set([...source.matchAll(/'((?:DSTORE|REDIS|LOG)_[A-Z_]+)'/g)].map((m) => m[1]));
    for (const v of read) {
      assert.ok(
        SETTINGS.some((s) => s.env === v),
        `${v} is read but missing from SETTINGS`,
      );
      assert.ok(readme.includes(v), `${v} is missing from README.md`);
    }
  });
});

describe('keys and names', () => {
  it('spells every key under the prefix with ":" separators and a hash tag', () => {
    const k = makeKeys('p1');
    assert.equal(k.workerOps('w1'), 'p1:worker:{w1}:ops');
    assert.equal(k.coordReplies('c1'), 'p1:coord:{c1}:replies');
    assert.equal(k.workerFetch('w1'), 'p1:worker:{w1}:fetch');
    assert.equal(k.dead, '{p1}:dead');
    assert.equal(k.bullPrefix, '{p1}:bull');
  });

  it('puts all shared metadata in one cluster slot, so multi-key scripts and MULTIs stay in it', () => {
    const k = makeKeys('p1');
    const shared = [
      k.dead,
      k.workers,
      k.workerStatus,
      k.token,
      k.tables,
      k.chunks,
      k.tableChunks('t'),
      k.openPosts,
      k.postChunks('P1'),
      k.postWorkers('P1'),
      k.workerChunks('w1'),
      k.workerChunks('w2'),
      k.underReplicated,
      k.coordinators,
      k.scrubReport,
      k.scrubReports,
      `${k.bullPrefix}:repair:wait`,
    ];
    assert.equal(calculateSlot.generateMulti(shared), calculateSlot('{p1}'));
    // Every key of the prefix matches one of its SCAN patterns.
    for (const key of [...shared, k.workerOps('w1'), k.coordReplies('c1')]) {
      assert.ok(
        k.patterns.some((p) => new RegExp(`^${p.replace(/[{}]/g, '\\$&').replace('*', '.*')}$`).test(key)),
        key,
      );
    }
  });

  it("spreads the workers' ops streams over the slots (one slot per stream)", () => {
    const k = makeKeys('p1');
    const slots = new Set(Array.from({ length: 64 }, (_, i) => calculateSlot(k.workerOps(`w${i}`))));
    assert.equal(slots.size, 64, 'each worker id hashes to its own slot');
    assert.equal(calculateSlot(k.workerOps('w7')), calculateSlot('w7'), 'the tag is the worker id');
    assert.equal(calculateSlot(k.coordReplies('c1')), calculateSlot('c1'));
  });

  it('refuses a prefix with braces: the key builder places the hash tags itself', () => {
    assert.throws(() => makeKeys('{p1}'), /invalid key prefix/);
    assert.throws(() => loadCommonOptions({ DSTORE_PREFIX: '{x}' }), /DSTORE_PREFIX/);
  });

  it('reads REDIS_CLUSTER_NODES as host:port seeds and names it on a bad value', () => {
    assert.deepEqual(
      loadCommonOptions({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, redis-b:7001,[::1]:7002' }).redisClusterNodes,
      [
        { host: '10.0.0.1', port: 7000 },
        { host: 'redis-b', port: 7001 },
        { host: '::1', port: 7002 },
      ],
    );
    assert.equal(loadCommonOptions({}).redisClusterNodes, undefined);
    assert.throws(
      () => loadCommonOptions({ REDIS_CLUSTER_NODES: 'host-without-port' }),
      /REDIS_CLUSTER_NODES: must be a comma-separated list of host:port, got "host-without-port"/,
    );
    assert.throws(() => loadCommonOptions({ REDIS_CLUSTER_NODES: 'h:99999' }), /REDIS_CLUSTER_NODES/);
  });

  it('refuses ids that would break a key apart', () => {
    const k = makeKeys('p1');
    assert.throws(() => k.workerOps('a:b'), /invalid worker id "a:b"/);
    assert.throws(() => makeKeys('a b'), /invalid key prefix/);
    assert.throws(() => assertName('table', '-x'), /invalid table/);
    assert.equal(assertName('table', 'events_2024.v1'), 'events_2024.v1');
  });

  it('orders stream ids numerically, not as text', () => {
    assert.ok(compareStreamIds('9-0', '10-0') < 0);
    assert.ok(compareStreamIds('10-2', '10-10') < 0);
    assert.equal(compareStreamIds('5-1', '5-1'), 0);
    assert.ok(compareStreamIds('1700000000000-1', '1700000000000-0') > 0);
  });
});
