import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCommonOptions, loadWorkerOptions, SETTINGS } from '../../common/config';
import { ConfigError } from '../../common/errors';
import { makeKeys } from '../../common/keys';
import { assertName } from '../../common/names';
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
        (e: unknown) => e instanceof ConfigError && e.variable === variable && e.message.startsWith(`${variable}: `) && re.test(e.message),
      );
    });
  }

  it('reads rediss:// URLs with credentials', () => {
    assert.equal(loadCommonOptions({ REDIS_URL: 'rediss://u:p@h:6380/2' }).redisUrl, 'rediss://u:p@h:6380/2');
  });

  it('documents every DSTORE_ setting the code reads in the README', () => {
    const root = path.resolve(__dirname, '..', '..', '..');
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const source = fs.readFileSync(path.join(root, 'common', 'config.ts'), 'utf8');
    const read = new Set([...source.matchAll(/'((?:DSTORE|REDIS|LOG)_[A-Z_]+)'/g)].map((m) => m[1]));
    for (const v of read) {
      assert.ok(SETTINGS.some((s) => s.env === v), `${v} is read but missing from SETTINGS`);
      assert.ok(readme.includes(v), `${v} is missing from README.md`);
    }
  });
});

describe('keys and names', () => {
  it('spells every key under the prefix with ":" separators', () => {
    const k = makeKeys('p1');
    assert.equal(k.workerOps('w1'), 'p1:worker:w1:ops');
    assert.equal(k.coordReplies('c1'), 'p1:coord:c1:replies');
    assert.equal(k.fetchChannel, 'p1:fetch');
    assert.equal(k.dead, 'p1:dead');
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
