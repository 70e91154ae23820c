import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { aclSetUserArgs, allKeyPatterns, workerAclRules } from '../../common/acl';
import { loadCommonOptions, loadCoordinatorOptions, readCliToken } from '../../common/config';
import { ConfigError } from '../../common/errors';
import { makeKeys } from '../../common/keys';
import { findToken, parseTokenEntries } from '../../common/tokens';
import { requiredAccess, secretOf } from '../../coordinator/api/auth';

const SECRET = 'abcdefghijklmnop-secret';

function configError(fn: () => unknown, variable: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof ConfigError && e.variable === variable && re.test(e.message));
}

describe('security settings', () => {
  it('reads tokens from DSTORE_TOKENS and DSTORE_TOKENS_FILE and finds them by secret', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dstore-tokens-'));
    const file = path.join(dir, 'tokens');
    fs.writeFileSync(file, `# ops\nbob:${SECRET}-2:write\n\n`);
    const o = loadCoordinatorOptions({ DSTORE_TOKENS: `alice:${SECRET}:read`, DSTORE_TOKENS_FILE: file });
    assert.deepEqual(
      o.tokens.map((t) => [t.name, t.role]),
      [
        ['alice', 'read'],
        ['bob', 'write'],
      ],
    );
    assert.equal(findToken(o.tokens, `${SECRET}-2`)?.name, 'bob');
    assert.equal(findToken(o.tokens, SECRET.slice(1)), undefined);
    fs.rmSync(dir, { recursive: true });
  });

  it('refuses bad token entries without echoing the secret', () => {
    for (const [entry, re] of [
      ['alice:short:read', /shorter than 16/],
      [`alice:${SECRET}:root`, /role "root"/],
      [`al ice:${SECRET}:read`, /token name/],
      [`alice:${SECRET}`, /name:secret:role/],
      [`a:${SECRET}:read,a:${SECRET}x:read`, /used twice/],
    ] as const) {
      assert.throws(
        () => loadCoordinatorOptions({ DSTORE_TOKENS: entry }),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.variable === 'DSTORE_TOKENS' &&
          re.test(e.message) &&
          !e.message.includes(SECRET),
        entry,
      );
    }
    configError(
      () => loadCoordinatorOptions({ DSTORE_TOKENS_FILE: '/no/such/file' }),
      'DSTORE_TOKENS_FILE',
      /cannot read "\/no\/such\/file": ENOENT/,
    );
    assert.throws(() => parseTokenEntries([{ text: 'x:y:z', where: 'entry 1' }], 'V'), /entry 1/);
  });

  it('binds to a non-loopback address only with tokens or DSTORE_INSECURE=1', () => {
    configError(() => loadCoordinatorOptions({ DSTORE_HOST: '0.0.0.0' }), 'DSTORE_HOST', /no API tokens are set/);
    assert.equal(loadCoordinatorOptions({ DSTORE_HOST: '0.0.0.0', DSTORE_INSECURE: '1' }).insecure, true);
    assert.equal(
      loadCoordinatorOptions({ DSTORE_HOST: '0.0.0.0', DSTORE_TOKENS: `a:${SECRET}:admin` }).tokens.length,
      1,
    );
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1'])
      assert.equal(loadCoordinatorOptions({ DSTORE_HOST: host }).tokens.length, 0);
    configError(() => loadCoordinatorOptions({ DSTORE_INSECURE: 'yes' }), 'DSTORE_INSECURE', /0 or 1/);
  });

  it('checks REDIS_TLS_CA_FILE at start', () => {
    configError(
      () => loadCommonOptions({ REDIS_URL: 'rediss://h:6380', REDIS_TLS_CA_FILE: '/no/ca.pem' }),
      'REDIS_TLS_CA_FILE',
      /cannot read "\/no\/ca.pem": ENOENT/,
    );
    configError(
      () => loadCommonOptions({ REDIS_URL: 'redis://h:6379', REDIS_TLS_CA_FILE: '/no/ca.pem' }),
      'REDIS_TLS_CA_FILE',
      /not rediss:\/\//,
    );
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dstore-ca-'));
    fs.writeFileSync(path.join(dir, 'junk.pem'), 'hello');
    configError(
      () => loadCommonOptions({ REDIS_URL: 'rediss://h:6380', REDIS_TLS_CA_FILE: path.join(dir, 'junk.pem') }),
      'REDIS_TLS_CA_FILE',
      /no PEM certificate/,
    );
    fs.writeFileSync(path.join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    assert.match(
      loadCommonOptions({ REDIS_URL: 'rediss://h:6380', REDIS_TLS_CA_FILE: path.join(dir, 'ca.pem') }).redisTlsCa ?? '',
      /BEGIN CERTIFICATE/,
    );
    fs.rmSync(dir, { recursive: true });
  });

  it('checks the limit settings', () => {
    configError(
      () => loadCoordinatorOptions({ DSTORE_MAX_RECORD_BYTES: '2000000' }),
      'DSTORE_MAX_RECORD_BYTES',
      /must not exceed DSTORE_CHUNK_BYTES/,
    );
    configError(() => loadCoordinatorOptions({ DSTORE_MAX_FIELDS: '0' }), 'DSTORE_MAX_FIELDS', /between 1 and/);
    assert.equal(loadCoordinatorOptions({ DSTORE_CHUNK_BYTES: '4096' }).maxRecordBytes, 4096);
  });

  it('reads DSTORE_TOKEN for the CLI, refusing a whole name:secret:role list', () => {
    assert.equal(readCliToken({ DSTORE_TOKEN: ` ${SECRET} ` }), SECRET);
    assert.equal(readCliToken({}), undefined);
    configError(
      () => readCliToken({ DSTORE_TOKEN: `a:${SECRET}:read,b:${SECRET}:read` }),
      'DSTORE_TOKEN',
      /secret alone/,
    );
  });
});

describe('route → role table', () => {
  const cases: [string, string | undefined, string, string][] = [
    ['GET', '/healthz', '/healthz', 'open'],
    ['GET', '/metrics', '/metrics', 'read'],
    ['GET', '/status', '/status', 'read'],
    ['GET', '/tables', '/tables', 'read'],
    ['GET', '/tables', '/tables?stats=1', 'read'],
    ['GET', '/tables/:name', '/tables/t?stats=1', 'read'],
    ['GET', '/tables/:name/records/:id', '/tables/t/records/r1', 'read'],
    ['POST', '/tables/:name/query', '/tables/t/query', 'read'],
    ['GET', '/tables/:name/records', '/tables/t/records?where=%7B%7D', 'read'],
    ['HEAD', '/tables/:name/records', '/tables/t/records', 'read'],
    ['POST', '/tables/:name/records', '/tables/t/records', 'write'],
    ['PATCH', '/tables/:name/records', '/tables/t/records', 'write'],
    ['DELETE', '/tables/:name/records', '/tables/t/records', 'write'],
    ['PUT', '/tables/:name', '/tables/t', 'admin'],
    ['DELETE', '/tables/:name', '/tables/t', 'admin'],
    ['GET', '/workers', '/workers', 'read'],
    ['POST', '/workers/:id/drain', '/workers/w1/drain', 'admin'],
    ['POST', '/rebalance', '/rebalance', 'admin'],
    ['GET', '/admin/queues', '/admin/queues', 'admin'],
    ['GET', '/admin/queues/*', '/admin/queues/static/app.js', 'admin'],
    // A route nobody put in the table is closed; an unknown URL needs any token (then 404).
    ['POST', '/something-new', '/something-new', 'admin'],
    ['GET', undefined, '/nope', 'read'],
  ];
  for (const [method, route, url, want] of cases) {
    it(`${method} ${route ?? url} needs ${want}`, () => assert.equal(requiredAccess(method, route, url), want));
  }

  it('takes the secret from Bearer or from the password of Basic', () => {
    assert.equal(secretOf(`Bearer ${SECRET}`), SECRET);
    assert.equal(secretOf(`bearer   ${SECRET}`), SECRET);
    assert.equal(secretOf('Basic ' + Buffer.from(`me:${SECRET}`).toString('base64')), SECRET);
    for (const h of [undefined, '', 'Bearer', `Token ${SECRET}`, `Bearer ${SECRET} extra`])
      assert.equal(secretOf(h), undefined, String(h));
  });
});

describe('ACL rules', () => {
  it('give a worker its own stream only and follow the key spelling of makeKeys', () => {
    const k = makeKeys('p1');
    const rules = workerAclRules(k, 'w7');
    assert.ok(rules.includes(`~${k.workerOps('w7')}`));
    assert.ok(!rules.some((r) => r.includes(k.workerOps('w8'))));
    assert.ok(rules.includes(`%W~${k.coordReplies('c1').replace('c1', '*')}`));
    assert.ok(rules.includes(`&${k.workerFetch('w7')}`));
    assert.ok(!rules.some((r) => r.includes(k.workerFetch('w8'))));
    assert.ok(rules.includes('-@all') && !rules.includes('+@all'));
    assert.deepEqual(aclSetUserArgs('u', 'pw', ['x']), ['ACL', 'SETUSER', 'u', 'reset', 'on', '>pw', 'x']);
  });

  it('cover every key of the prefix for a coordinator (each key matches some pattern)', () => {
    const k = makeKeys('p1');
    const globs = allKeyPatterns(k).map(
      (p) => new RegExp('^' + p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$'),
    );
    for (const key of [
      k.workerOps('w1'),
      k.coordReplies('c9'),
      k.dead,
      k.tables,
      k.chunks,
      k.tableChunks('t'),
      k.postChunks('p'),
      k.workerChunks('w2'),
      k.underReplicated,
      `${k.bullPrefix}:repair:meta`,
    ]) {
      assert.ok(
        globs.some((g) => g.test(key)),
        `${key} matches no coordinator pattern`,
      );
    }
  });
});
