import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Redis from 'ioredis';
import { makeKeys } from '../../common/keys';
import { clusterSuite } from '../support/cluster';
import { spawnNode, type ChildHandle } from '../support/processes';
import { clusterNodesOf, freePort, scanKeys } from '../support/redis';
import { waitFor } from '../support/wait';

const KEY = crypto.randomBytes(32);
const OTHER_KEY = crypto.randomBytes(32);
const ROWS = 300;

interface Person {
  _id: string;
  name: string;
  ssn: string;
  profile: unknown;
  city: string;
  n: number;
}

/**
 * Rows whose encrypted values (name, ssn, profile.note) and clear control value (city) are unique, greppable strings.
 */
function people(tag: string): Person[] {
  return Array.from({ length: ROWS }, (_, i) => ({
    _id: `p${String(i).padStart(4, '0')}`,
    name: `SecretName-${tag}-${i}-Ä✓`,
    ssn: `SecretSsn-${tag}-${i}`,
    profile: i % 7 === 0 ? null : { note: `SecretNote-${tag}-${i}`, tags: [i, i * 1.5, true] },
    city: `ClearCity-${tag}-${i}`,
    n: i % 37,
  }));
}

/** Every command the Redis server(s) of `url` receive, while running; MONITOR per node of a cluster. */
async function monitor(url: string): Promise<{ text: () => string; stop: () => Promise<void> }> {
  const nodes = clusterNodesOf(url);
  const urls = nodes ? nodes.split(',').map((n) => `redis://${n}`) : [url];
  const seen: string[] = [];
  const conns: Redis[] = [];
  for (const u of urls) {
    const c = new Redis(u, { lazyConnect: true });
    c.on('error', () => undefined);
    await c.connect();
    const m = await c.monitor();
    m.on('monitor', (_time: string, args: string[]) => seen.push(args.join(' ')));
    conns.push(c, m as unknown as Redis);
  }
  return {
    text: () => seen.join('\n'),
    stop: async () => void (await Promise.all(conns.map((c) => c.quit().catch(() => undefined)))),
  };
}

/** The values held under the prefix's keys, as text: streams, hashes, sets, sorted sets, strings, lists. */
async function dumpKeys(client: Redis, prefix: string): Promise<string> {
  const out: string[] = [];
  for (const k of await scanKeys(client, makeKeys(prefix).patterns)) {
    const type = await client.type(k);
    if (type === 'stream') out.push(JSON.stringify(await client.xrange(k, '-', '+')));
    else if (type === 'hash') out.push(JSON.stringify(await client.hgetall(k)));
    else if (type === 'set') out.push(JSON.stringify(await client.smembers(k)));
    else if (type === 'zset') out.push(JSON.stringify(await client.zrange(k, 0, -1)));
    else if (type === 'list') out.push(JSON.stringify(await client.lrange(k, 0, -1)));
    else if (type === 'string') out.push((await client.get(k)) ?? '');
  }
  return out.join('\n');
}

/** The raw bytes of every file in a worker's data dir (SQLite file, -wal, -shm). */
function rawFiles(dir: string): Buffer {
  const parts: Buffer[] = [];
  for (const e of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile())
      parts.push(fs.readFileSync(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)));
  }
  return Buffer.concat(parts);
}

describe('e2e: encrypted columns (DSTORE_ENCRYPTION_KEY)', function () {
  this.timeout(180_000);
  let spy: Awaited<ReturnType<typeof monitor>>;
  /** A coordinator with another key, started before any table exists (so its start check passes). */
  let early: { child: ChildHandle; url: string };
  const extra: ChildHandle[] = [];
  const input = people(crypto.randomBytes(4).toString('hex'));

  /**
   * Starts one more coordinator on the cluster's Redis and prefix with its own key setting; resolves once it answers,
   * or with its exit.
   */
  async function coordinator(name: string, key: string): Promise<{ child: ChildHandle; url: string }> {
    const port = await freePort();
    const nodes = clusterNodesOf(e2e.redis.url);
    const child = spawnNode(name, 'dist/coordinator/main.js', [], {
      REDIS_URL: e2e.redis.url,
      ...(nodes ? { REDIS_CLUSTER_NODES: nodes } : {}),
      DSTORE_PREFIX: e2e.prefix,
      DSTORE_PORT: String(port),
      DSTORE_REPLICAS: '2',
      DSTORE_WORKER_TIMEOUT_MS: '1500',
      DSTORE_ENCRYPTION_KEY: key,
      LOG_FORMAT: 'json',
    });
    extra.push(child);
    const url = `http://127.0.0.1:${port}`;
    await waitFor(
      async () => (child.child.exitCode !== null ? true : (await fetch(`${url}/healthz`).catch(() => undefined))?.ok),
      { what: `${name} to answer or exit`, timeoutMs: 20_000 },
    );
    return { child, url };
  }

  async function call(
    url: string,
    method: string,
    p: string,
    body?: unknown,
  ): Promise<{ status: number; text: string; json: () => Record<string, unknown> }> {
    const res = await fetch(url + p, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, text, json: () => JSON.parse(text) as Record<string, unknown> };
  }

  const e2e = clusterSuite({
    workers: 2,
    replicas: 2,
    env: { DSTORE_ENCRYPTION_KEY: KEY.toString('base64'), DSTORE_CHUNK_ROWS: '50' },
  });

  before(async () => {
    // Before any table or row exists: the spy sees every command that could carry a secret.
    spy = await monitor(e2e.redis.url);
    early = await coordinator('coord-early-wrong-key', OTHER_KEY.toString('base64'));
  });

  after(async () => {
    await spy?.stop();
    await Promise.all(extra.map((c) => c.stop()));
  });

  it('creates a table with encrypted columns and stores a key check value beside it', async () => {
    const r = await e2e.cluster.api<{ table: Record<string, unknown> }>('PUT', '/tables/people', {
      schema: 'name:string:encrypted, ssn:string:encrypted, profile:json:encrypted, city:string, n:integer',
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.deepEqual(r.body.table.encrypted, ['name', 'ssn', 'profile']);
    assert.match(String(r.body.table.keyCheck), /^hmac-sha256:[0-9a-f]{32}$/);
    // The same definition again is a no-op; another set of encrypted columns is a conflict.
    assert.equal(
      (
        await e2e.cluster.api('PUT', '/tables/people', {
          schema: 'name:string:encrypted, ssn:string:encrypted, profile:json:encrypted, city:string, n:integer',
        })
      ).status,
      200,
    );
    assert.equal(
      (
        await e2e.cluster.api('PUT', '/tables/people', {
          schema: 'name:string, ssn:string:encrypted, profile:json:encrypted, city:string, n:integer',
        })
      ).status,
      409,
    );
  });

  it('reads back exactly what was written: plain, sorted, projected', async () => {
    const post = await e2e.cluster.api<{ inserted: number }>(
      'POST',
      '/tables/people/records',
      input.map((p) => JSON.stringify(p)).join('\n'),
      'application/x-ndjson',
    );
    assert.equal(post.status, 200, JSON.stringify(post.body));
    assert.equal(post.body.inserted, ROWS);

    const all = await e2e.cluster.query<Person>('people');
    assert.deepEqual(
      [...all].sort((a, b) => (a._id < b._id ? -1 : 1)),
      input,
    );

    const sorted = await e2e.cluster.query<Person>('people', {
      sort: [
        { field: 'n', dir: 'desc' },
        { field: 'city', dir: 'asc' },
      ],
      limit: 40,
    });
    const expected = [...input]
      .sort((a, b) => b.n - a.n || (a.city < b.city ? -1 : a.city > b.city ? 1 : 0))
      .slice(0, 40);
    assert.deepEqual(sorted, expected);

    const projected = await e2e.cluster.query<Partial<Person>>('people', {
      where: { n: { $lt: 3 } },
      fields: ['_id', 'ssn', 'profile'],
    });
    assert.deepEqual(
      [...projected].sort((a, b) => (a._id! < b._id! ? -1 : 1)),
      input.filter((p) => p.n < 3).map((p) => ({ _id: p._id, ssn: p.ssn, profile: p.profile })),
    );
    // Grouping on a clear column is fine; the encrypted ones never reach the workers' arithmetic.
    const groups = await e2e.cluster.query<{ n: number; count: number }>('people', {
      groupBy: ['n'],
      aggregate: [{ op: 'count' }],
      sort: [{ field: 'n', dir: 'asc' }],
      limit: 2,
    });
    assert.deepEqual(groups, [
      { n: 0, count: input.filter((p) => p.n === 0).length },
      { n: 1, count: input.filter((p) => p.n === 1).length },
    ]);
  });

  it('encrypts an UPDATE set of an encrypted column', async () => {
    const r = await e2e.cluster.api<{ updated: number }>('PATCH', '/tables/people/records', {
      where: { n: 5 },
      set: { ssn: 'SecretUpdated-ssn', city: 'ClearUpdated-city' },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const changed = input.filter((p) => p.n === 5);
    assert.equal(r.body.updated, changed.length);
    for (const p of changed) Object.assign(p, { ssn: 'SecretUpdated-ssn', city: 'ClearUpdated-city' });
    const rows = await e2e.cluster.query<Person>('people', { where: { n: 5 } });
    assert.deepEqual(
      [...rows].sort((a, b) => (a._id < b._id ? -1 : 1)),
      changed,
    );
  });

  it('refuses filter, sort, group, aggregate and nested paths on an encrypted column with a 400 that says why', async () => {
    const cases: [string, string, unknown][] = [
      ['POST', '/tables/people/query', { where: { ssn: input[0].ssn } }],
      ['POST', '/tables/people/query', { where: { $or: [{ n: 1 }, { 'profile.note': { $exists: true } }] } }],
      ['POST', '/tables/people/query', { sort: [{ field: 'name', dir: 'asc' }] }],
      ['POST', '/tables/people/query', { groupBy: ['name'], aggregate: [{ op: 'count' }] }],
      ['POST', '/tables/people/query', { aggregate: [{ op: 'min', field: 'ssn' }] }],
      ['POST', '/tables/people/query', { fields: ['profile.note'] }],
      ['GET', `/tables/people/records?where=${encodeURIComponent(JSON.stringify({ name: 'x' }))}`, undefined],
      ['PATCH', '/tables/people/records', { where: { ssn: 'x' }, set: { n: 1 } }],
      ['PATCH', '/tables/people/records', { where: { n: 1 }, set: { 'profile.note': 'x' } }],
      ['DELETE', '/tables/people/records', { where: { name: 'x' } }],
    ];
    for (const [method, p, body] of cases) {
      const r = await call(e2e.cluster.url, method, p, body);
      assert.equal(r.status, 400, `${method} ${p} ${JSON.stringify(body)} → ${r.status} ${r.text}`);
      assert.match(String(r.json().message), /encrypted column/, r.text);
    }
    assert.match(
      String((await call(e2e.cluster.url, 'POST', '/tables/people/query', { where: { ssn: 'x' } })).json().message),
      /fresh random nonce.*deterministic encryption/,
    );
    // Nothing was changed by the refused writes.
    assert.equal((await e2e.cluster.query('people')).length, ROWS);
  });

  it('keeps the encrypted values out of Redis and the SQLite files, while the clear column is there', async () => {
    const secrets = input.flatMap((p) => [p.name, p.ssn, ...(p.profile ? [(p.profile as { note: string }).note] : [])]);
    const controls = input.map((p) => p.city);
    const sources: [string, Buffer][] = [
      ['redis traffic (MONITOR)', Buffer.from(spy.text())],
      ['redis keys of the prefix', Buffer.from(await dumpKeys(e2e.cluster.redis, e2e.prefix))],
      ...[...e2e.cluster.workers.values()].map((w): [string, Buffer] => [
        `SQLite files of ${w.id}`,
        rawFiles(w.dataDir),
      ]),
    ];
    for (const [what, bytes] of sources) {
      const leaked = secrets.filter((s) => bytes.includes(s));
      assert.deepEqual(leaked.slice(0, 3), [], `${what} holds ${leaked.length} encrypted value(s) in clear`);
      assert.ok(bytes.includes('SecretUpdated') === false, `${what} holds the updated value in clear`);
      const found = controls.filter((c) => bytes.includes(c)).length;
      assert.ok(found > 0, `${what}: the clear control column is not found either, so this check proves nothing`);
    }
    // The key itself is never logged.
    const log = fs.readFileSync(e2e.cluster.coordinator.logFile, 'utf8');
    for (const k of [KEY.toString('base64'), KEY.toString('hex')])
      assert.ok(!log.includes(k), 'the coordinator log holds the key');
  });

  it('a coordinator with another key refuses to start, naming the variable and the table', async () => {
    const { child } = await coordinator('coord-wrong-key', OTHER_KEY.toString('hex'));
    const exit = await child.exited;
    assert.equal(exit.code, 1, child.tail(20));
    assert.match(
      child.tail(40),
      /dstore coordinator: DSTORE_ENCRYPTION_KEY: is not the key table\(s\) people were created with/,
    );
  });

  it('a coordinator without a key refuses to read, write or create encrypted tables, naming DSTORE_ENCRYPTION_KEY', async () => {
    const { child, url } = await coordinator('coord-no-key', '');
    assert.equal(child.child.exitCode, null, child.tail(20));
    const refused: [string, string, unknown, string?][] = [
      ['POST', '/tables/people/query', {}],
      ['GET', '/tables/people/records', undefined],
      ['PATCH', '/tables/people/records', { where: { n: 1 }, set: { city: 'x' } }],
      ['PUT', '/tables/other', { schema: 'a:string:encrypted' }],
    ];
    for (const [method, p, body] of refused) {
      const r = await call(url, method, p, body);
      assert.equal(r.status, 500, `${method} ${p} → ${r.status} ${r.text}`);
      assert.equal(r.json().error, 'encryption_key_missing', r.text);
      assert.match(String(r.json().message), /no DSTORE_ENCRYPTION_KEY/);
    }
    const res = await fetch(`${url}/tables/people/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: JSON.stringify({ name: 'a', ssn: 'b', city: 'NoKeyCity' }),
    });
    assert.equal(res.status, 500);
    assert.match(await res.text(), /DSTORE_ENCRYPTION_KEY/);
    // Tables without encrypted columns work as before.
    assert.equal((await call(url, 'PUT', '/tables/plain', { schema: 'a:string' })).status, 201);
    assert.equal((await e2e.cluster.query('people', { where: { city: 'NoKeyCity' } })).length, 0);
  });

  it('a coordinator with another key, started before the table existed, refuses it at first use; no rows leave', async () => {
    const { child, url } = early;
    assert.equal(child.child.exitCode, null, child.tail(20));
    const r = await call(e2e.cluster.url, 'PUT', '/tables/later', { schema: 's:string:encrypted,c:string' });
    assert.equal(r.status, 201);
    const post = await fetch(`${e2e.cluster.url}/tables/later/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: '{"s":"LaterSecret","c":"x"}\n',
    });
    assert.equal(post.status, 200);
    for (const [method, p, body] of [
      ['POST', '/tables/later/query', {}],
      ['GET', '/tables/later/records', undefined],
      ['PUT', '/tables/later', { schema: 's:string:encrypted,c:string' }],
    ] as const) {
      const a = await call(url, method, p, body);
      assert.equal(a.status, 500, `${method} ${p} → ${a.status} ${a.text}`);
      assert.equal(a.json().error, 'encryption_key_mismatch');
      assert.match(String(a.json().message), /another DSTORE_ENCRYPTION_KEY/);
      assert.ok(!a.text.includes('LaterSecret') && !a.text.includes('enc:v1:'));
    }
    // The right key still reads it.
    assert.deepEqual(
      (await e2e.cluster.query<{ s: string; c: string }>('later')).map(({ s, c }) => ({ s, c })),
      [{ s: 'LaterSecret', c: 'x' }],
    );
  });
});
