import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { clusterSuite } from '../support/cluster';
import { spawnNode } from '../support/processes';

const SECRETS = {
  read: 'r-secret-0123456789abcdef',
  write: 'w-secret-0123456789abcdef',
  admin: 'a-secret-0123456789abcdef',
};
const TOKENS = `alice:${SECRETS.read}:read,bob:${SECRETS.write}:write,root:${SECRETS.admin}:admin`;

type Who = keyof typeof SECRETS | 'none' | 'bad';

async function call(
  url: string,
  who: Who,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (who === 'bad') headers.authorization = 'Bearer not-a-token-at-all-0000';
  else if (who !== 'none') headers.authorization = `Bearer ${SECRETS[who]}`;
  if (body !== undefined) headers['content-type'] = contentType;
  const res = await fetch(url + path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = text && !text.includes('\n{') ? JSON.parse(text) : { lines: text };
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

async function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const child = spawnNode(`cli-${args[0]}`, 'dist/cli/main.js', args, { LOG_FORMAT: 'json', DSTORE_TOKEN: '', ...env });
  const exit = await child.exited;
  return { code: exit.code, out: fs.readFileSync(child.logFile, 'utf8') };
}

describe('e2e: API tokens (DSTORE_TOKENS) and roles', function () {
  this.timeout(120_000);

  const e2e = clusterSuite({
    workers: 1,
    replicas: 1,
    env: { DSTORE_TOKENS: TOKENS, LOG_LEVEL: 'debug' },
    token: SECRETS.admin,
  });

  it('leaves /healthz open and answers 401 without a token, naming the header to send', async () => {
    assert.equal((await call(e2e.cluster.url, 'none', 'GET', '/healthz')).status, 200);
    for (const [method, path] of [
      ['GET', '/tables'],
      ['GET', '/workers'],
      ['PUT', '/tables/x'],
      ['GET', '/metrics'],
      ['GET', '/no/such/route'],
    ]) {
      const r = await call(e2e.cluster.url, 'none', method, path);
      assert.equal(r.status, 401, `${method} ${path}`);
      assert.equal(r.body.error, 'unauthorized');
      assert.match(String(r.body.message), /Authorization: Bearer/);
      assert.match(r.headers.get('www-authenticate') ?? '', /realm="dstore"/);
    }
  });

  it('answers 401 for a wrong secret, a wrong scheme and a token name used as secret', async () => {
    assert.equal((await call(e2e.cluster.url, 'bad', 'GET', '/tables')).status, 401);
    for (const authorization of [
      'Token ' + SECRETS.admin,
      'Bearer',
      'Bearer alice',
      `Bearer ${SECRETS.admin}x`,
      `Bearer ${SECRETS.admin.slice(0, -1)}`,
    ]) {
      const res = await fetch(e2e.cluster.url + '/tables', { headers: { authorization } });
      assert.equal(res.status, 401, authorization);
    }
  });

  it('gives each role exactly its routes: read < write < admin', async () => {
    // [method, path, body, role needed]
    const routes: [string, string, unknown, 'read' | 'write' | 'admin'][] = [
      ['GET', '/tables', undefined, 'read'],
      ['GET', '/workers', undefined, 'read'],
      ['POST', '/tables/t1/query', {}, 'read'],
      ['GET', '/tables/t1/records', undefined, 'read'],
      ['PATCH', '/tables/t1/records', { where: { a: 1 }, set: { a: 2 } }, 'write'],
      ['DELETE', '/tables/t1/records', { where: { a: 99 } }, 'write'],
      ['PUT', '/tables/t2', {}, 'admin'],
      ['DELETE', '/tables/t2', undefined, 'admin'],
    ];
    assert.equal((await e2e.cluster.api('PUT', '/tables/t1')).status, 201);
    for (const [method, path, body, needs] of routes) {
      for (const who of ['read', 'write', 'admin'] as const) {
        const allowed = ['read', 'write', 'admin'].indexOf(who) >= ['read', 'write', 'admin'].indexOf(needs);
        const r = await call(e2e.cluster.url, who, method, path, body);
        if (allowed) assert.ok(r.status < 400, `${who} ${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
        else {
          assert.equal(r.status, 403, `${who} ${method} ${path}`);
          assert.equal(r.body.error, 'forbidden');
          assert.equal(r.body.needs, needs);
          assert.match(String(r.body.message), new RegExp(`needs the ${needs} role; token \\w+ has ${who}`));
        }
      }
    }
    const post = await call(e2e.cluster.url, 'read', 'POST', '/tables/t1/records', '{"a":1}\n', 'application/x-ndjson');
    assert.equal(post.status, 403);
    const ok = await call(e2e.cluster.url, 'write', 'POST', '/tables/t1/records', '{"a":1}\n', 'application/x-ndjson');
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    // Routes other helpers add (drain, rebalance, dashboard) are admin-only even for write tokens.
    for (const [method, path] of [
      ['POST', '/workers/w1/drain'],
      ['POST', '/rebalance'],
      ['GET', '/admin/queues'],
    ]) {
      assert.equal((await call(e2e.cluster.url, 'write', method, path)).status, 403, `${method} ${path}`);
    }
  });

  it('the CLI sends DSTORE_TOKEN and exits 1 with one line without it', async () => {
    const ok = await cli(['workers', '--url', e2e.cluster.url], { DSTORE_TOKEN: SECRETS.read });
    assert.equal(ok.code, 0, ok.out);
    const no = await cli(['workers', '--url', e2e.cluster.url], {});
    assert.equal(no.code, 1);
    assert.match(no.out.trim(), /^dstore: GET \/workers needs a token.*set DSTORE_TOKEN/);
    assert.equal(no.out.trim().split('\n').length, 1);
    const low = await cli(['table', 'create', 'x', '--url', e2e.cluster.url], { DSTORE_TOKEN: SECRETS.read });
    assert.equal(low.code, 1);
    assert.match(low.out, /needs the admin role; token alice has read/);
  });

  it('never writes a secret to the coordinator log', async () => {
    const log = fs.readFileSync(e2e.cluster.coordinator.logFile, 'utf8');
    assert.ok(log.length > 0);
    for (const s of Object.values(SECRETS))
      assert.ok(!log.includes(s), 'a token secret appears in the coordinator log');
  });
});

describe('e2e: a coordinator without tokens', function () {
  this.timeout(30_000);

  it('refuses to listen on a non-loopback address unless DSTORE_INSECURE=1', async () => {
    const child = spawnNode('coordinator-open', 'dist/coordinator/main.js', [], {
      REDIS_URL: 'redis://127.0.0.1:1',
      DSTORE_HOST: '0.0.0.0',
      DSTORE_PORT: '0',
      DSTORE_TOKENS: '',
      DSTORE_INSECURE: '',
    });
    const exit = await child.exited;
    assert.equal(exit.code, 1);
    assert.match(
      child.tail(5),
      /DSTORE_HOST: is 0\.0\.0\.0, reachable from other machines, but no API tokens are set: set DSTORE_TOKENS/,
    );
  });
});
