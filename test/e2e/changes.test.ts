/**
 * Change streams (issue 20): `GET /tables/:name/changes`. A watcher follows a table through
 * POSTs, an upsert, UPDATEs, DELETEs, aborted POSTs, a drain and a coordinator SIGKILL, and
 * must see exactly the reference sequence: the acknowledged writes in the order they were
 * made (one writer, so that is the table's write order), each as one event per row it
 * changed, computed in plain JS from a model of the table. Within one write the order of its
 * rows is not defined, so each write's events are compared as a set.
 */
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import { Dstore } from '../../client';
import type { ChangeEvent } from '../../common/changes';
import { clusterSuite, TestCluster } from '../support/cluster';
import { startRedis, uniquePrefix, type TestRedis } from '../support/redis';
import type { Row } from '../support/driver';
import * as fs from 'node:fs';
import type Redis from 'ioredis';
import { runCli, spawnNode } from '../support/processes';
import { waitFor } from '../support/wait';

const KEY = crypto.randomBytes(32).toString('base64');

/** Reads a watch (NDJSON) into `events` until stopped. */
class Watcher {
  readonly events: ChangeEvent[] = [];
  status = 0;
  /** Why the watch ended, when not stopped. */
  error?: Error;
  private readonly abort = new AbortController();
  readonly done: Promise<void>;

  constructor(url: string, table: string, after?: string) {
    this.done = (async () => {
      const res = await fetch(`${url}/tables/${table}/changes${after ? `?after=${after}` : ''}`, {
        signal: this.abort.signal,
      });
      this.status = res.status;
      if (!res.ok || !res.body) return;
      const decoder = new TextDecoder();
      let rest = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        const parts = (rest + decoder.decode(chunk, { stream: true })).split('\n');
        rest = parts.pop()!;
        for (const p of parts) if (p) this.events.push(JSON.parse(p) as ChangeEvent);
      }
    })().catch((e: unknown) => {
      if ((e as Error).name !== 'AbortError') this.error = e as Error;
    });
  }

  async until(n: number, what: string): Promise<void> {
    await waitFor(() => (this.events.length >= n ? true : undefined), {
      what: `${n} events (${what})`,
      timeoutMs: 20_000,
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

type Doc = Record<string, unknown>;
type Expected = { op: ChangeEvent['op']; _id: string; row?: Doc }[];

/** One write's expected events against the model, which it then changes. */
class Model {
  readonly rows = new Map<string, Row>();
  readonly writes: Expected[] = [];

  insert(rows: Row[]): void {
    this.writes.push(rows.map((r) => ({ op: 'insert', _id: r._id as string, row: r })));
    for (const r of rows) this.rows.set(r._id as string, r);
  }

  replace(rows: Row[]): void {
    this.writes.push(
      rows.map((r) => ({ op: this.rows.has(r._id as string) ? 'update' : 'insert', _id: r._id as string, row: r })),
    );
    for (const r of rows) this.rows.set(r._id as string, r);
  }

  merge(rows: Row[]): void {
    const after = rows.map((r) => ({ ...(this.rows.get(r._id as string) ?? {}), ...r }) as Row);
    this.writes.push(
      after.map((r) => ({ op: this.rows.has(r._id as string) ? 'update' : 'insert', _id: r._id as string, row: r })),
    );
    for (const r of after) this.rows.set(r._id as string, r);
  }

  update(match: (r: Row) => boolean, set: Doc): void {
    const hit = [...this.rows.values()].filter(match).map((r) => ({ ...r, ...set }));
    this.writes.push(hit.map((r) => ({ op: 'update', _id: r._id as string, row: r })));
    for (const r of hit) this.rows.set(r._id as string, r);
  }

  delete(match: (r: Row) => boolean): void {
    const hit = [...this.rows.values()].filter(match);
    this.writes.push(hit.map((r) => ({ op: 'delete', _id: r._id as string })));
    for (const r of hit) this.rows.delete(r._id as string);
  }
}

/** Lost, duplicated and wrong events of `got` against the model's writes, each write as a set. */
function compareEvents(got: ChangeEvent[], writes: Expected[]): { lost: number; duplicated: number; wrong: number } {
  let at = 0;
  let lost = 0;
  let wrong = 0;
  const tokens = new Set<string>();
  let duplicated = 0;
  for (const e of got) {
    if (tokens.has(e.token)) duplicated++;
    tokens.add(e.token);
  }
  for (const w of writes) {
    const part = got.slice(at, at + w.length);
    at += w.length;
    const key = (e: { op: string; _id: string; row?: Doc }) =>
      JSON.stringify([e.op, e._id, e.row ? sorted(e.row) : null]);
    const want = new Map<string, number>();
    for (const e of w) want.set(key(e), (want.get(key(e)) ?? 0) + 1);
    for (const e of part) {
      const k = key(e);
      const n = want.get(k) ?? 0;
      if (n === 0) wrong++;
      else want.set(k, n - 1);
    }
    for (const n of want.values()) lost += n;
  }
  wrong += Math.max(0, got.length - at);
  return { lost, duplicated, wrong };
}

function sorted(r: Doc): Doc {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1)));
}

const nd = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n');

describe('e2e: change streams', function () {
  this.timeout(180_000);
  const e2e = clusterSuite({
    workers: 3,
    replicas: 2,
    env: {
      DSTORE_CHUNK_ROWS: '20',
      DSTORE_ENCRYPTION_KEY: KEY,
      DSTORE_COORDINATOR_TIMEOUT_MS: '2000',
      DSTORE_SWEEP_MS: '500',
    },
  });

  it('a watcher sees exactly the committed writes, through aborts, a drain and a coordinator kill', async () => {
    const c = e2e.cluster;
    assert.equal((await c.api('PUT', '/tables/t', { changes: true })).status, 201);
    const model = new Model();
    const w = new Watcher(c.url, 't');
    await waitFor(() => (w.status === 200 ? true : undefined), { what: 'the watch open' });
    const rows = (from: number, n: number, g: number) =>
      Array.from({ length: n }, (_, i) => ({ _id: `r${from + i}`, g, v: 0, s: `a, "b" ${from + i}` }));
    const post = async (r: Row[], q = '') => c.api('POST', `/tables/t/records${q}`, nd(r), 'application/x-ndjson');

    assert.equal((await post(rows(0, 70, 1))).status, 200);
    model.insert(rows(0, 70, 1));
    assert.equal((await post(rows(70, 50, 2))).status, 200);
    model.insert(rows(70, 50, 2));
    // Aborted: a row that is not an object after three chunks were sent; a stored _id.
    assert.equal((await post([...rows(500, 60, 3), 7 as unknown as Row])).status, 400);
    assert.equal((await post(rows(0, 1, 1))).status, 409);
    const upd = await c.api<{ updated: number }>('PATCH', '/tables/t/records', { where: { g: 1 }, set: { v: 5 } });
    assert.equal(upd.body.updated, 70);
    model.update((r) => r.g === 1, { v: 5 });
    const del = await c.api<{ deleted: number }>('DELETE', '/tables/t/records', {
      where: { g: 2, _id: { $in: ['r70', 'r71', 'r99'] } },
    });
    assert.equal(del.body.deleted, 3);
    model.delete((r) => r.g === 2 && ['r70', 'r71', 'r99'].includes(r._id as string));
    const replaced = [
      { _id: 'r1', g: 9, whole: true },
      { _id: 'r900', g: 9, whole: true },
    ];
    assert.equal((await post(replaced, '?onConflict=replace')).status, 200);
    model.replace(replaced);
    // A merge: its stored rows as the merge leaves them (read at the commit), its new rows inserted.
    const merged = [
      { _id: 'r2', extra: 1 },
      { _id: 'r901', g: 9 },
    ];
    assert.equal((await post(merged, '?onConflict=merge')).status, 200);
    model.merge(merged);
    // Chunk moves emit nothing.
    const drained = await runCli(c.url, ['worker', 'drain', 'w1', '--timeout', '120']);
    assert.equal(drained.code, 0, drained.out);
    await w.until(model.writes.flat().length, 'before the kill');
    const before = w.events.length;
    await w.stop();

    // The coordinator dies; the watcher resumes with its last token through another one.
    c.coordinator.kill('SIGKILL');
    await c.coordinator.exited;
    const other = await c.spawnCoordinator('coordinator-2');
    const last = w.events[w.events.length - 1].token;
    const w2 = new Watcher(other.url, 't', last);
    const u3 = await fetch(`${other.url}/tables/t/records`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ where: { g: 2 }, set: { v: 7 } }),
    });
    assert.equal(u3.status, 200);
    model.update((r) => r.g === 2, { v: 7 });
    const p4 = await fetch(`${other.url}/tables/t/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: nd(rows(2000, 30, 4)),
    });
    assert.equal(p4.status, 200);
    model.insert(rows(2000, 30, 4));
    await w2.until(model.writes.flat().length - before, 'after the kill');
    await sleepMs(300);
    await w2.stop();
    const all = [...w.events, ...w2.events];
    assert.deepEqual(compareEvents(all, model.writes), { lost: 0, duplicated: 0, wrong: 0 });
    // The table reads as the model: the events describe it.
    const read = await fetch(`${other.url}/tables/t/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    const got = (await read.text())
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Row);
    assert.equal(got.length, model.rows.size);
    await c.startCoordinator();
  });

  it('replaying the events of concurrent POSTs, UPDATEs and DELETEs from two coordinators gives the table', async () => {
    const c = e2e.cluster;
    await c.api('PUT', '/tables/race', { changes: true });
    const w = new Watcher(c.url, 'race');
    await waitFor(() => (w.status === 200 ? true : undefined), { what: 'the watch open' });
    const other = await c.spawnCoordinator('coordinator-race');
    const urls = [c.url, other.url];
    const send = (url: string, method: string, p: string, body: string, ct = 'application/json') =>
      fetch(url + p, { method, body, headers: { 'content-type': ct } }).then(async (r) => (await r.text(), r.status));
    let n = 0;
    const writer = async (url: string, k: number) => {
      for (let i = 0; i < 25; i++) {
        const g = (k * 100 + i) % 7;
        const r = Math.random();
        if (r < 0.5) {
          const rows = Array.from({ length: 15 }, () => ({ _id: `x${n++}`, g, v: 0 }));
          await send(url, 'POST', '/tables/race/records', nd(rows), 'application/x-ndjson');
        } else if (r < 0.8)
          await send(url, 'PATCH', '/tables/race/records', JSON.stringify({ where: { g }, set: { v: i } }));
        else await send(url, 'DELETE', '/tables/race/records', JSON.stringify({ where: { g, v: { $gt: 10 } } }));
      }
    };
    await Promise.all([writer(urls[0], 1), writer(urls[1], 2), writer(urls[0], 3), writer(urls[1], 4)]);
    const final = await c.query<Row>('race');
    // Replayed in order, the events end where the table is.
    await waitFor(
      () => {
        const replay = new Map<string, Doc>();
        for (const e of w.events)
          if (e.op === 'delete') replay.delete(e._id);
          else replay.set(e._id, e.row!);
        return compareReplay(replay, final) ? true : undefined;
      },
      { what: 'the replayed events to equal the table', timeoutMs: 20_000 },
    );
    const tokens = new Set(w.events.map((e) => e.token));
    assert.equal(tokens.size, w.events.length, 'no event twice');
    await w.stop();
  });

  it('an UPDATE whose coordinator died right after sending it gets its events once, from the clean-up sweep', async () => {
    const c = e2e.cluster;
    await c.api('PUT', '/tables/crash', { changes: true });
    const rows = Array.from({ length: 40 }, (_, i) => ({ _id: `c${i}`, g: 1, v: 0 }));
    assert.equal((await c.api('POST', '/tables/crash/records', nd(rows), 'application/x-ndjson')).status, 200);
    const w = new Watcher(c.url, 'crash');
    await waitFor(() => (w.status === 200 ? true : undefined), { what: 'the watch open' });
    const doomed = await c.spawnCoordinator('coordinator-doomed', { DSTORE_FAILPOINT_EXIT_AFTER_SEND: '1' });
    const answer = await fetch(`${doomed.url}/tables/crash/records`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ where: { g: 1 }, set: { v: 9 } }),
    }).catch((e: Error) => e);
    assert.ok(answer instanceof Error, 'the coordinator died before answering');
    await doomed.child.exited;
    // Its lock's lease ends, the sweep takes the lock, sends the UPDATE again and moves its events.
    await waitFor(() => (w.events.length >= 40 ? true : undefined), {
      what: 'the events of the UPDATE',
      timeoutMs: 40_000,
    });
    await sleepMs(500);
    await w.stop();
    assert.deepEqual(w.events.map((e) => [e.op, e._id, e.row?.v]).sort(), rows.map((r) => ['update', r._id, 9]).sort());
    assert.ok((await c.query<Row>('crash')).every((r) => r.v === 9));
  });

  it('keeps encrypted columns encrypted in Redis and decrypts them for the watcher', async () => {
    const c = e2e.cluster;
    await c.api('PUT', '/tables/sec', { schema: 'name:string,ssn:string:encrypted', changes: true });
    const w = new Watcher(c.url, 'sec');
    await waitFor(() => (w.status === 200 ? true : undefined), { what: 'the watch open' });
    await c.api(
      'POST',
      '/tables/sec/records',
      nd([{ _id: 'p1', name: 'Ann', ssn: '123-45-6789' }]),
      'application/x-ndjson',
    );
    await c.api('PATCH', '/tables/sec/records', { where: { _id: 'p1' }, set: { ssn: '999-99-9999' } });
    await w.until(2, 'insert and update');
    await w.stop();
    assert.deepEqual(
      w.events.map((e) => [e.op, e.row]),
      [
        ['insert', { _id: 'p1', name: 'Ann', ssn: '123-45-6789' }],
        ['update', { _id: 'p1', name: 'Ann', ssn: '999-99-9999' }],
      ],
    );
    const raw = JSON.stringify(await c.redis.xrange(e2e.keys.changes('sec'), '-', '+'));
    assert.ok(!raw.includes('123-45-6789') && !raw.includes('999-99-9999'), 'a clear value is in Redis');
    assert.ok(raw.includes('enc:v1:'));
  });

  it('refuses (410) a token whose following events were trimmed, or from before changes were turned off', async () => {
    const c = e2e.cluster;
    await c.api('PUT', '/tables/short', { changes: { maxEntries: 100 } });
    await c.api(
      'POST',
      '/tables/short/records',
      nd(Array.from({ length: 5 }, (_, i) => ({ _id: `a${i}` }))),
      'application/x-ndjson',
    );
    const token = await firstToken(c.redis, e2e.keys.changes('short'));
    // Resuming after the first event works while it is kept.
    const kept = await readSome(c.url, 'short', token, 4);
    assert.deepEqual(
      kept.map((e) => e._id),
      ['a1', 'a2', 'a3', 'a4'],
    );
    for (let k = 0; k < 5; k++)
      await c.api(
        'POST',
        '/tables/short/records',
        nd(Array.from({ length: 200 }, (_, i) => ({ _id: `b${k}-${i}` }))),
        'application/x-ndjson',
      );
    const gone = await c.api<{ error: string; message: string }>('GET', `/tables/short/changes?after=${token}`);
    assert.equal(gone.status, 410);
    assert.equal(gone.body.error, 'changes_lost');
    assert.match(gone.body.message, /no longer kept.*watch from the end/);
    // Off, then on: a token from before is refused, though nothing was trimmed by retention.
    await c.api('PUT', '/tables/toggle', { changes: true });
    await c.api('POST', '/tables/toggle/records', nd([{ _id: 't1' }]), 'application/x-ndjson');
    const t1 = await firstToken(c.redis, e2e.keys.changes('toggle'));
    assert.equal((await c.api('PATCH', '/tables/toggle', { changes: false })).status, 200);
    assert.equal((await c.api('GET', '/tables/toggle/changes')).status, 409);
    await c.api('POST', '/tables/toggle/records', nd([{ _id: 't2' }]), 'application/x-ndjson');
    assert.equal((await c.api('PATCH', '/tables/toggle', { changes: true })).status, 200);
    assert.equal((await c.api('GET', `/tables/toggle/changes?after=${t1}`)).status, 410);
    const bad = await c.api<{ field: string }>('GET', '/tables/toggle/changes?after=nope');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.field, 'after');
  });

  it('speaks Server-Sent Events, resuming with Last-Event-ID, and the client and CLI watch', async () => {
    const c = e2e.cluster;
    await c.api('PUT', '/tables/sse', { changes: true });
    await c.api(
      'POST',
      '/tables/sse/records',
      nd([
        { _id: 's1', a: 1 },
        { _id: 's2', a: 2 },
      ]),
      'application/x-ndjson',
    );
    const first = await firstToken(c.redis, e2e.keys.changes('sse'));
    const ctl = new AbortController();
    const res = await fetch(`${c.url}/tables/sse/changes`, {
      headers: { accept: 'text/event-stream', 'last-event-id': first },
      signal: ctl.signal,
    });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    let text = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += new TextDecoder().decode(chunk);
      if (text.includes('data:')) break;
    }
    ctl.abort();
    const m = /id: (\S+)\nevent: change\ndata: (.*)\n\n/.exec(text);
    assert.ok(m, text);
    assert.equal((JSON.parse(m[2]) as ChangeEvent)._id, 's2', 'resumed after the Last-Event-ID');
    assert.equal((JSON.parse(m[2]) as ChangeEvent).token, m[1]);
    // The typed client: an async iterator, from a token.
    const seen: ChangeEvent[] = [];
    for await (const e of new Dstore(c.url).table('sse').watch({ after: first })) {
      seen.push(e);
      break;
    }
    assert.deepEqual(
      seen.map((e) => [e.op, e._id, e.row]),
      [['insert', 's2', { _id: 's2', a: 2 }]],
    );
    // The CLI, interrupted: it printed the events in table format.
    const cli = spawnNode('cli-watch', 'dist/cli/main.js', ['watch', 'sse', '--after', first, '--format', 'table'], {
      DSTORE_URL: c.url,
      LOG_FORMAT: 'json',
    });
    await waitFor(() => (fs.readFileSync(cli.logFile, 'utf8').includes('insert') ? true : undefined), {
      what: 'dstore watch to print the event',
    });
    cli.kill('SIGINT');
    await cli.exited;
    const out = fs.readFileSync(cli.logFile, 'utf8');
    assert.match(out, new RegExp(`\\.2  insert  s2  \\{"_id":"s2","a":2\\}`));
  });
});

function sleepMs(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The token of a change stream's first event. */
async function firstToken(redis: Redis, key: string): Promise<string> {
  const [[id, f]] = await redis.xrange(key, '-', '+', 'COUNT', 1);
  return `${id}.${f[f.indexOf('n') + 1]}`;
}

/** Whether replayed events give exactly the rows read. */
function compareReplay(replay: Map<string, Doc>, rows: Row[]): boolean {
  if (replay.size !== rows.length) return false;
  return rows.every((r) => JSON.stringify(sorted(replay.get(r._id as string) ?? {})) === JSON.stringify(sorted(r)));
}

async function readSome(url: string, table: string, after: string | undefined, n: number): Promise<ChangeEvent[]> {
  const w = new Watcher(url, table, after);
  if (n > 0) await w.until(n, 'some');
  await w.stop();
  return w.events;
}

describe('e2e: change streams across a Redis SIGKILL and restart (AOF, appendfsync always)', function () {
  this.timeout(180_000);
  let redis: TestRedis | undefined;
  let cluster: TestCluster | undefined;

  after(async () => {
    await cluster?.stop();
    await redis?.stop();
  });

  it('a watcher resuming with its last token misses and repeats nothing', async () => {
    redis = await startRedis({ appendonly: true });
    cluster = new TestCluster({ redisUrl: redis.url, prefix: uniquePrefix(), workers: 2, replicas: 2 });
    cluster.redis.on('error', () => undefined);
    await cluster.start();
    const c = cluster;
    await c.api('PUT', '/tables/t', { changes: true });
    const model = new Model();
    const w = new Watcher(c.url, 't');
    await waitFor(() => (w.status === 200 ? true : undefined), { what: 'the watch open' });
    const batch = (k: number) => Array.from({ length: 30 }, (_, i) => ({ _id: `k${k}-${i}`, k, v: 0 }));
    for (let k = 0; k < 3; k++) {
      assert.equal((await c.api('POST', '/tables/t/records', nd(batch(k)), 'application/x-ndjson')).status, 200);
      model.insert(batch(k));
    }
    assert.equal((await c.api('PATCH', '/tables/t/records', { where: { k: 1 }, set: { v: 1 } })).status, 200);
    model.update((r) => r.k === 1, { v: 1 });
    await w.until(model.writes.flat().length, 'before the restart');
    await w.stop();
    const last = w.events[w.events.length - 1].token;
    await redis.restart!();
    await c.waitLive(['w1', 'w2']);
    // Writes after the restart, then the watcher comes back with its token.
    for (const k of [3, 4]) {
      await waitFor(
        async () =>
          (await c.api('POST', '/tables/t/records', nd(batch(k)), 'application/x-ndjson')).status === 200
            ? true
            : undefined,
        { what: `POST ${k} after the restart` },
      );
      model.insert(batch(k));
    }
    assert.equal((await c.api('DELETE', '/tables/t/records', { where: { k: 0 } })).status, 200);
    model.delete((r) => r.k === 0);
    const w2 = new Watcher(c.url, 't', last);
    await w2.until(model.writes.flat().length - w.events.length, 'after the restart');
    await sleepMs(300);
    await w2.stop();
    assert.deepEqual(compareEvents([...w.events, ...w2.events], model.writes), { lost: 0, duplicated: 0, wrong: 0 });
  });
});
