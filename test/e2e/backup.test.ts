/**
 * Backups (issue 19): `dstore backup create|verify|restore`. A backup is taken while two
 * coordinators POST, PATCH and DELETE and one worker is SIGSTOPped, and restored into a new
 * cluster on a Redis of its own, with another worker count and R. The reference is a model of the
 * writes in plain JS: every write is independent of the others (its own rows), so the
 * restored data must be the preloaded rows with some set of whole writes applied, holding
 * every write acknowledged before the backup started and none sent after its cut.
 */
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Manifest } from '../../cli/backup-files';
import { clusterSuite, TestCluster } from '../support/cluster';
import type { Row } from '../support/driver';
import { runCli, spawnNode, tempDir } from '../support/processes';
import { clusterMode, dropPrefix, startRedis, startRedisCluster, uniquePrefix, type TestRedis } from '../support/redis';
import { sleep, waitFor } from '../support/wait';
import { makeKeys } from '../../common/keys';

const KEY = crypto.randomBytes(32).toString('base64');
const OTHER_KEY = crypto.randomBytes(32).toString('base64');

const GROUP_ROWS = 10;
const GROUPS = 400;

/** One write of the load, with when it was sent and answered (ms, this machine's clock). */
interface Write {
  kind: 'post' | 'patch' | 'delete';
  table: 't' | 's';
  /** post: the ids it inserts; patch/delete: the group it touches. */
  ids?: string[];
  rows?: Row[];
  group?: number;
  value?: number;
  sentAt: number;
  answeredAt?: number;
  acked: boolean;
}

function preloadT(): Row[] {
  const rows: Row[] = [];
  for (let g = 0; g < GROUPS; g++)
    for (let i = 0; i < GROUP_ROWS; i++) rows.push({ _id: `p-${g}-${i}`, g, v: 0, note: `a, "b" ${i}` });
  return rows;
}

function preloadS(): Row[] {
  return Array.from({ length: 300 }, (_, i) => ({
    _id: `s-${i}`,
    name: `n ${i}`,
    ssn: `000-${String(i).padStart(4, '0')}`,
  }));
}

/**
 * Which writes a restored state holds. Each must be whole (all its rows or none); one
 * acknowledged before `backupStart` must be in, one sent after `cutAt` must be out. Returns the
 * expected rows of each table under that set, and what broke those rules.
 */
function judge(
  writes: Write[],
  got: Record<'t' | 's', Map<string, Row>>,
  backupStart: number,
  cutAt: number,
): { expected: Record<'t' | 's', Map<string, Row>>; problems: string[]; applied: number } {
  const expected = {
    t: new Map(preloadT().map((r) => [r._id as string, r])),
    s: new Map(preloadS().map((r) => [r._id as string, r])),
  };
  const problems: string[] = [];
  let applied = 0;
  for (const [n, w] of writes.entries()) {
    const g = got[w.table];
    let present: number;
    let total: number;
    if (w.kind === 'post') {
      total = w.ids!.length;
      present = w.ids!.filter((id) => g.has(id)).length;
    } else {
      const ids = Array.from({ length: GROUP_ROWS }, (_, i) => `p-${w.group}-${i}`);
      total = ids.length;
      present =
        w.kind === 'patch'
          ? ids.filter((id) => g.get(id)?.v === w.value).length
          : ids.filter((id) => !g.has(id)).length;
    }
    if (present !== 0 && present !== total) problems.push(`write ${n} (${w.kind}) is partly in: ${present}/${total}`);
    const isIn = present === total;
    if (!isIn && w.acked && w.answeredAt! < backupStart)
      problems.push(`write ${n} (${w.kind}) was acknowledged before the backup started but is not in it`);
    if (isIn && w.sentAt > cutAt) problems.push(`write ${n} (${w.kind}) was sent after the cut but is in the backup`);
    if (!isIn) continue;
    applied++;
    const e = expected[w.table];
    if (w.kind === 'post') for (const r of w.rows!) e.set(r._id as string, r);
    else
      for (let i = 0; i < GROUP_ROWS; i++) {
        const id = `p-${w.group}-${i}`;
        if (w.kind === 'delete') e.delete(id);
        else e.set(id, { ...e.get(id)!, v: w.value });
      }
  }
  return { expected, problems, applied };
}

/** Rows lost, duplicated and wrong in `got` against `want`. */
function compare(got: Row[], want: Map<string, Row>): { lost: number; duplicated: number; wrong: number } {
  const seen = new Map<string, number>();
  let wrong = 0;
  for (const r of got) {
    seen.set(r._id as string, (seen.get(r._id as string) ?? 0) + 1);
    const w = want.get(r._id as string);
    if (!w || JSON.stringify(sorted(r)) !== JSON.stringify(sorted(w))) wrong++;
  }
  let lost = 0;
  for (const id of want.keys()) if (!seen.has(id)) lost++;
  return { lost, duplicated: [...seen.values()].filter((n) => n > 1).length, wrong };
}

function sorted(r: Row): Row {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1))) as Row;
}

async function send(url: string, method: string, p: string, body: string, ct = 'application/json'): Promise<number> {
  const res = await fetch(url + p, { method, body, headers: { 'content-type': ct } });
  await res.text();
  return res.status;
}

describe('e2e: backup and restore', function () {
  this.timeout(180_000);
  const e2e = clusterSuite({
    workers: 3,
    replicas: 2,
    env: { DSTORE_CHUNK_ROWS: '40', DSTORE_ENCRYPTION_KEY: KEY, DSTORE_ACK_TIMEOUT_MS: '3000' },
  });
  let dir = '';
  let manifest: Manifest;
  let judged: ReturnType<typeof judge>;
  let restored: TestCluster | undefined;
  let restoredPrefix = '';
  let fresh: TestRedis | undefined;

  before(async () => {
    const c = e2e.cluster;
    assert.equal((await c.api('PUT', '/tables/t')).status, 201);
    assert.equal((await c.api('PUT', '/tables/s', { schema: 'name:string,ssn:string:encrypted' })).status, 201);
    assert.equal((await c.api('PUT', '/tables/t/indexes/by_g', { fields: ['g'] })).status, 201);
    const nd = (rows: Row[]) => rows.map((r) => JSON.stringify(r)).join('\n');
    assert.equal((await c.api('POST', '/tables/t/records', nd(preloadT()), 'application/x-ndjson')).status, 200);
    assert.equal((await c.api('POST', '/tables/s/records', nd(preloadS()), 'application/x-ndjson')).status, 200);
    const coord2 = await c.spawnCoordinator('coordinator-2');
    const urls = [c.url, coord2.url];

    // The load: four writers, two per coordinator, each write on rows of its own.
    const writes: Write[] = [];
    let stop = false;
    let nextGroup = 0;
    let nextPost = 0;
    const writer = async (url: string) => {
      while (!stop) {
        const r = Math.random();
        const w: Write =
          r < 0.4 || nextGroup >= GROUPS
            ? (() => {
                const n = nextPost++;
                const table = n % 3 === 0 ? 's' : 't';
                const rows: Row[] = Array.from({ length: 7 }, (_, i) =>
                  table === 's'
                    ? { _id: `sn-${n}-${i}`, name: `new ${n}`, ssn: `9${n}-${i}` }
                    : { _id: `n-${n}-${i}`, g: -1, v: n },
                );
                return { kind: 'post', table, rows, ids: rows.map((x) => x._id as string), sentAt: 0, acked: false };
              })()
            : {
                kind: r < 0.7 ? 'patch' : 'delete',
                table: 't',
                group: nextGroup++,
                value: 1000 + nextGroup,
                sentAt: 0,
                acked: false,
              };
        writes.push(w);
        w.sentAt = Date.now();
        const status =
          w.kind === 'post'
            ? await send(
                url,
                'POST',
                `/tables/${w.table}/records`,
                w.rows!.map((x) => JSON.stringify(x)).join('\n'),
                'application/x-ndjson',
              )
            : w.kind === 'patch'
              ? await send(
                  url,
                  'PATCH',
                  '/tables/t/records',
                  JSON.stringify({ where: { g: w.group }, set: { v: w.value } }),
                )
              : await send(url, 'DELETE', '/tables/t/records', JSON.stringify({ where: { g: w.group } }));
        w.answeredAt = Date.now();
        w.acked = status === 200;
        await sleep(5);
      }
    };
    const load = Promise.all([writer(urls[0]), writer(urls[1]), writer(urls[0]), writer(urls[1])]);
    await sleep(800);
    c.workers.get('w3')!.child.kill('SIGSTOP');
    await sleep(2500);
    dir = path.join(tempDir('backup'), 'b1');
    const backupStart = Date.now();
    const made = await runCli(urls[1], ['backup', 'create', dir]);
    await sleep(300);
    stop = true;
    await load;
    c.workers.get('w3')!.child.kill('SIGCONT');
    assert.equal(made.code, 0, made.out);
    manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;

    // A new cluster on a Redis of its own (a Redis Cluster of its own under
    // DSTORE_TEST_REDIS=cluster): two workers, R = 1, the same key.
    fresh = clusterMode() ? await startRedisCluster() : await startRedis();
    restoredPrefix = uniquePrefix();
    restored = new TestCluster({
      redisUrl: fresh.url,
      prefix: restoredPrefix,
      workers: 2,
      replicas: 1,
      env: { DSTORE_CHUNK_ROWS: '100', DSTORE_ENCRYPTION_KEY: KEY },
    });
    await restored.start();
    const r = await runCli(restored.url, ['backup', 'restore', dir]);
    assert.equal(r.code, 0, r.out);
    const got = {
      t: new Map((await restored.query<Row>('t')).map((x) => [x._id as string, x])),
      s: new Map((await restored.query<Row>('s')).map((x) => [x._id as string, x])),
    };
    judged = judge(writes, got, backupStart, manifest.cut.ms);
    const before = writes.filter((w) => w.acked && w.answeredAt! < backupStart).length;
    const after = writes.filter((w) => w.sentAt > manifest.cut.ms).length;
    console.log(
      `      writes: ${writes.length} (${before} acknowledged before the backup, ${after} sent after its cut); in the backup: ${judged.applied}`,
    );
    assert.ok(before > 20 && after > 5, 'the load ran on both sides of the cut');
  });

  after(async () => {
    await restored?.stop();
    if (fresh) {
      if (restoredPrefix) await dropPrefix(fresh.url, restoredPrefix);
      await fresh.stop();
    }
  });

  it('holds every write acknowledged before it, none sent after its cut, and no write in part', () => {
    assert.deepEqual(judged.problems, []);
  });

  it('restores into another worker count and R equal to the reference at the cut, row for row', async () => {
    for (const table of ['t', 's'] as const) {
      const got = await restored!.query<Row>(table);
      assert.deepEqual(compare(got, judged.expected[table]), { lost: 0, duplicated: 0, wrong: 0 }, table);
      // Each row once in the backup, not R times.
      assert.equal(manifest.tables.find((x) => x.name === table)!.rows, judged.expected[table].size);
    }
  });

  it('keeps encrypted columns encrypted in the files, and the key check, never the key, in the manifest', () => {
    const s = manifest.tables.find((t) => t.name === 's')!;
    assert.deepEqual(s.encrypted, ['ssn']);
    assert.match(s.keyCheck!, /\S/);
    const text = fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8');
    assert.ok(!text.includes(KEY));
    const file = fs.readFileSync(path.join(dir, s.file));
    assert.ok(!file.includes(Buffer.from('000-0001')), 'a clear ssn is in the table file');
    assert.ok(file.includes(Buffer.from('enc:v1:')));
  });

  it('rebuilds the indexes', async () => {
    const r = await restored!.api<{ indexes: { name: string; fields: string[] }[] }>('GET', '/tables/t/indexes');
    assert.deepEqual(
      r.body.indexes.map((i) => [i.name, i.fields]),
      [['by_g', ['g']]],
    );
  });

  it('verify passes on the backup and fails, naming the file, on a flipped byte', async () => {
    const ok = await runCli(e2e.cluster.url, ['backup', 'verify', dir]);
    assert.equal(ok.code, 0, ok.out);
    const copy = path.join(tempDir('backup-flip'), 'b');
    fs.cpSync(dir, copy, { recursive: true });
    const t = manifest.tables.find((x) => x.name === 't')!;
    const f = path.join(copy, t.file);
    const bytes = fs.readFileSync(f);
    bytes[Math.floor(bytes.length / 2)] ^= 0x40;
    fs.writeFileSync(f, bytes);
    const bad = await runCli(e2e.cluster.url, ['backup', 'verify', copy]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.out, /tables\/t\.sqlite does not match its checksum/);
    const refused = await runCli(restored!.url, ['backup', 'restore', copy, '--table', 't', '--as', 't_flipped']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.out, /damaged.*nothing was restored/);
    assert.equal((await restored!.api('GET', '/tables/t_flipped')).status, 404);
  });

  it('refuses a table that exists, and restores one table under a new name', async () => {
    const c = e2e.cluster;
    const refused = await runCli(c.url, ['backup', 'restore', dir, '--table', 't']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.out, /table t exists; restore it under another name \(--table t --as <new name>\)/);
    const ok = await runCli(c.url, ['backup', 'restore', dir, '--table', 't', '--as', 't_restored']);
    assert.equal(ok.code, 0, ok.out);
    const got = await c.query<Row>('t_restored');
    assert.deepEqual(compare(got, judged.expected.t), { lost: 0, duplicated: 0, wrong: 0 });
    assert.equal((await c.api('GET', '/tables/s_restored')).status, 404);
  });

  it('restores encrypted columns under a new name (re-encrypted for it) and reads them in clear', async () => {
    const c = e2e.cluster;
    const ok = await runCli(c.url, ['backup', 'restore', dir, '--table', 's', '--as', 's2']);
    assert.equal(ok.code, 0, ok.out);
    const got = await c.query<Row>('s2');
    assert.deepEqual(compare(got, judged.expected.s), { lost: 0, duplicated: 0, wrong: 0 });
  });

  it('leaves no row visible when a restore is killed half way through its POST', async () => {
    const c = restored!;
    // Each XADD delayed 0-40 ms: the POST is open long enough to be killed in the middle.
    const slow = await c.spawnCoordinator('coordinator-slow', { DSTORE_FAILPOINT_SEND_JITTER_MS: '40' });
    const child = spawnNode(
      'cli-restore-killed',
      'dist/cli/main.js',
      ['backup', 'restore', dir, '--table', 't', '--as', 't_killed'],
      {
        DSTORE_URL: slow.url,
        LOG_FORMAT: 'json',
      },
    );
    const keys = makeKeys(restoredPrefix);
    let open = false;
    for (let i = 0; i < 500 && !open; i++) {
      const posts = Object.values(await c.redis.hgetall(keys.openPosts)).map((p) => JSON.parse(p) as { table: string });
      open = posts.some((p) => p.table === 't_killed');
      if (!open) await sleep(10);
    }
    assert.ok(open, 'the restore POST was seen open');
    child.kill('SIGKILL');
    await child.exited;
    // The coordinator sees the body cut off and aborts the POST: nothing of it is stored.
    await waitFor(
      async () =>
        Object.values(await c.redis.hgetall(keys.openPosts)).some((p) => p.includes('"t_killed"')) ? undefined : true,
      { what: 'the killed restore POST aborted', timeoutMs: 30_000 },
    );
    assert.deepEqual(await c.query('t_killed'), []);
    const again = await runCli(c.url, ['backup', 'restore', dir, '--table', 't', '--as', 't_killed']);
    assert.notEqual(again.code, 0);
    assert.match(again.out, /table t_killed exists.*a restore that was killed leaves its table empty/);
  });

  it('refuses a coordinator with another encryption key at start, creating nothing', async () => {
    const prefix = uniquePrefix();
    const other = new TestCluster({
      redisUrl: e2e.redis.url,
      prefix,
      workers: 1,
      replicas: 1,
      env: { DSTORE_ENCRYPTION_KEY: OTHER_KEY },
    });
    try {
      await other.start();
      const r = await runCli(other.url, ['backup', 'restore', dir]);
      assert.notEqual(r.code, 0);
      assert.match(
        r.out,
        /encrypted with another key than the coordinator's DSTORE_ENCRYPTION_KEY.*Nothing was restored/,
      );
      assert.deepEqual((await other.api<{ tables: unknown[] }>('GET', '/tables')).body.tables, []);
    } finally {
      await other.stop();
      await dropPrefix(e2e.redis.url, prefix);
    }
  });

  it('reads a chunk from another copy when a worker restarted since the cut, and fails saying so when none is left', async () => {
    const c = e2e.cluster;
    await c.waitLive(['w1', 'w2', 'w3']);
    const want = new Map((await c.query<Row>('t')).map((r) => [r._id as string, r]));
    const { backup } = (await c.api<{ backup: string }>('POST', '/admin/backups')).body;
    const restart = async (id: string) => {
      await c.workers.get(id)!.child.stop();
      c.startWorker(id);
      await c.waitLive(['w1', 'w2', 'w3']);
    };
    await restart('w1');
    const r = await c.api<Row[]>('GET', `/admin/backups/${backup}/tables/t`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.pop(), { _backup: { table: 't', rows: want.size } });
    assert.deepEqual(compare(r.body, want), { lost: 0, duplicated: 0, wrong: 0 });
    // With w2 restarted too, the chunks only w1 and w2 held have no copy as of the cut.
    await restart('w2');
    // A 503, or (rows of other chunks having left already) an `_error` line instead of the trailer.
    const gone = await c.api<{ message: string } | Record<string, { message: string }>[]>(
      'GET',
      `/admin/backups/${backup}/tables/t`,
    );
    const err = Array.isArray(gone.body) ? gone.body[gone.body.length - 1]._error : gone.body;
    assert.ok(gone.status === 503 || (gone.status === 200 && err !== undefined), JSON.stringify(gone.body).slice(-300));
    assert.match(err.message, /no copy left as of backup .*w1 \(no snapshot of the backup\).*start the backup again/);
    assert.equal((await c.api('DELETE', `/admin/backups/${backup}`)).status, 200);
  });

  it("keeps a table's change stream setting, and the restore emits no events", async () => {
    const c = e2e.cluster;
    assert.equal((await c.api('PUT', '/tables/w', { changes: { maxEntries: 5000 } })).status, 201);
    const rows = [{ _id: 'w1' }, { _id: 'w2' }, { _id: 'w3' }];
    await c.api('POST', '/tables/w/records', rows.map((r) => JSON.stringify(r)).join('\n'), 'application/x-ndjson');
    const d = path.join(tempDir('backup-changes'), 'b');
    const made = await runCli(c.url, ['backup', 'create', d]);
    assert.equal(made.code, 0, made.out);
    const ok = await runCli(c.url, ['backup', 'restore', d, '--table', 'w', '--as', 'w_restored']);
    assert.equal(ok.code, 0, ok.out);
    const def = await c.api<{ changes?: unknown }>('GET', '/tables/w_restored');
    assert.deepEqual(def.body.changes, { maxEntries: 5000 });
    assert.equal(await c.redis.xlen(e2e.keys.changes('w_restored')), 0);
    assert.equal((await c.query('w_restored')).length, 3);
  });

  it('needs the cut to read: a backup that ended answers 404', async () => {
    const c = e2e.cluster;
    const cut = await c.api<{ backup: string }>('POST', '/admin/backups');
    assert.equal(cut.status, 201);
    const progress = await c.api<{ tables: { name: string }[] }>('GET', `/admin/backups/${cut.body.backup}`);
    assert.equal(progress.status, 200);
    assert.ok(progress.body.tables.some((t) => t.name === 't'));
    assert.equal((await c.api('DELETE', `/admin/backups/${cut.body.backup}`)).status, 200);
    const gone = await c.api('GET', `/admin/backups/${cut.body.backup}/tables/t`);
    assert.equal(gone.status, 404);
  });
});
