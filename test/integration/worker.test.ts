import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { ulid } from 'ulid';
import { matchesFilter } from '../../common/filter';
import {
  chunkSetToken,
  BackupEndMessage,
  BackupMessage,
  build,
  respRows,
  type OpAckMessage,
  type PostAckMessage,
} from '../../common/messages';
import type { QuerySpec } from '../../common/query';
import { compareSql, toSqlValue } from '../../common/sqlite-order';
import { Driver, type Row } from '../support/driver';
import { chunked, lossAndDuplicates, makeRows, multiset } from '../support/data';
import { startWorkerProcess, tempDir, type ChildHandle } from '../support/processes';
import { dropPrefix, sharedRedis, uniquePrefix, type TestRedis } from '../support/redis';
import { waitFor } from '../support/wait';

/** Reads a dotted path the way the filter language does. */
function get(row: Record<string, unknown>, field: string): unknown {
  let v: unknown = row;
  for (const seg of field.split('.'))
    v = v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[seg] : undefined;
  return v;
}

describe('worker (real child process, real Redis)', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let prefix: string;
  let driver: Driver;
  const children: ChildHandle[] = [];

  async function startWorker(id: string, dataDir = tempDir(`shard-${id}`), env: Record<string, string> = {}) {
    const child = startWorkerProcess({ redisUrl: redis.url, prefix, id, dataDir, env });
    children.push(child);
    await waitFor(
      async () => (await driver.status(id))?.ready === true && (await driver.status(id))?.pid === child.pid,
      {
        what: `worker ${id} ready`,
        timeoutMs: 20_000,
      },
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${child.tail(30)}`);
    });
    return { child, dataDir };
  }

  before(async () => {
    redis = await sharedRedis();
  });

  beforeEach(() => {
    prefix = uniquePrefix();
    driver = new Driver(redis.url, prefix);
  });

  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => c.stop()));
    await driver.close();
    await dropPrefix(redis.url, prefix);
  });

  it('applies a POST once and acks it, even when the entry is delivered twice', async () => {
    await startWorker('w1');
    const rows = makeRows(50);
    const msg = driver.post('t', rows, ['w1']);
    await driver.send('w1', msg);
    await driver.send('w1', msg); // the same chunk again, as a retrying coordinator would
    await driver.commit(['w1']);
    await driver.until(() => driver.acksFor(msg.chunk).length === 2, 'two POST_ACKs');
    const [first, second] = driver.acksFor(msg.chunk) as PostAckMessage[];
    assert.equal(first.status, 'ok');
    assert.equal(first.rows, 50);
    assert.equal(first.duplicate, false);
    assert.equal(second.duplicate, true, 'the second delivery is recognised by chunk id');
    assert.equal(second.rows, 50);
    const res = await driver.fetch('t', ['w1']);
    assert.deepEqual(lossAndDuplicates(rows, res.lines as Row[]), { lost: 0, duplicated: 0, wrong: 0 });
    assert.equal((await driver.groupInfo('w1')).pending, 0, 'every entry is acked');
  });

  it('applies UPDATE and DELETE in stream order relative to POSTs, counting per chunk', async () => {
    await startWorker('w1');
    const a = makeRows(40, 2, 'a');
    const b = makeRows(40, 3, 'b');
    await driver.setupTable('w1', 't');
    const pa = driver.post('t', a, ['w1'], undefined, 'pa');
    await driver.send('w1', pa);
    await driver.commit(['w1'], 'pa');
    const up = await driver.update('w1', 't', {}, { stage: 1 }); // reaches only rows of a
    const pb = driver.post('t', b, ['w1'], undefined, 'pb');
    await driver.send('w1', pb);
    await driver.commit(['w1'], 'pb');
    const del = await driver.delete('w1', 't', { city: 'Lyon' }); // reaches rows of a and b
    const up2 = await driver.update('w1', 't', { stage: { $exists: false } }, { stage: 2, 'meta.tag': 'x' });
    await driver.until(() => driver.opAcks(up2).length === 1, 'last OP_ACK');

    // The same sequence computed in plain JS.
    let expected: Row[] = a.map((r) => ({ ...r, stage: 1 }));
    expected.push(...b.map((r) => ({ ...r })));
    const deleted = expected.filter((r) => r.city === 'Lyon');
    expected = expected.filter((r) => r.city !== 'Lyon');
    const touched = expected.filter((r) => r.stage === undefined);
    expected = expected.map((r) =>
      r.stage === undefined ? { ...r, stage: 2, meta: { ...(r.meta as object), tag: 'x' } } : r,
    );

    const ackUp = driver.opAcks(up)[0] as OpAckMessage;
    assert.equal(ackUp.count, 40);
    assert.deepEqual(ackUp.counts, { [pa.chunk]: 40 });
    const ackDel = driver.opAcks(del)[0] as OpAckMessage;
    assert.equal(ackDel.count, deleted.length);
    assert.ok(
      deleted.length > 0 && deleted.some((r) => r._id.startsWith('a')) && deleted.some((r) => r._id.startsWith('b')),
    );
    assert.equal((ackDel.counts?.[pa.chunk] ?? 0) + (ackDel.counts?.[pb.chunk] ?? 0), deleted.length);
    assert.equal((driver.opAcks(up2)[0] as OpAckMessage).count, touched.length);

    const res = await driver.fetch('t', ['w1']);
    assert.deepEqual(multiset(res.lines), multiset(expected));
  });

  describe('FETCH', () => {
    const rows = makeRows(600, 7);
    beforeEach(async () => {
      await startWorker('w1');
      for (const c of chunked(rows, 100)) await driver.send('w1', driver.post('t', c, ['w1']));
      await driver.commit(['w1']);
      await driver.until((all) => all.filter((r) => r.type === 'POST_ACK').length === 6, 'six POST_ACKs');
    });

    const filters: unknown[] = [
      {},
      { city: 'Oslo' },
      { n: { $gte: 500 }, ok: true },
      { $or: [{ 'meta.depth': { $lt: 1 } }, { score: { $exists: false } }] },
      { 'meta.tag': null },
      { city: { $in: ['Lima', 'Kyoto'] }, n: { $not: { $lt: 900 } } },
    ];
    for (const where of filters) {
      it(`returns exactly the rows matching ${JSON.stringify(where)}`, async () => {
        const res = await driver.fetch('t', ['w1'], { where });
        const expected = rows.filter((r) => matchesFilter(where, r));
        assert.ok(expected.length > 0, 'the case selects something');
        assert.deepEqual(multiset(res.lines), multiset(expected));
      });
    }

    it('projects fields, leaving out missing ones', async () => {
      const res = await driver.fetch('t', ['w1'], {
        where: { score: { $exists: false } },
        fields: ['_id', 'score', 'meta.depth'],
      });
      const expected = rows
        .filter((r) => r.score === undefined)
        .map((r) => ({ _id: r._id, 'meta.depth': (r.meta as { depth: number }).depth }));
      assert.deepEqual(multiset(res.lines), multiset(expected));
    });

    it('sorts and limits in SQLite, sending the sort keys it compared', async () => {
      const res = await driver.fetch('t', ['w1'], {
        sort: [
          { field: 'city', dir: 'desc' },
          { field: 'score', dir: 'asc' },
        ],
        limit: 50,
      });
      const keyed = rows.map((r) => ({ r, k: [toSqlValue(r.city), toSqlValue(r.score)] }));
      keyed.sort((x, y) => -compareSql(x.k[0], y.k[0]) || compareSql(x.k[1], y.k[1]) || compareSql(x.r._id, y.r._id));
      const lines = res.lines as [unknown, unknown, string, Row][];
      assert.equal(lines.length, 50);
      assert.deepEqual(
        lines.map((l) => l[2]),
        keyed.slice(0, 50).map((x) => x.r._id),
      );
      assert.deepEqual(lines[0][3], keyed[0].r);
    });

    it('computes partial aggregates per group', async () => {
      const res = await driver.fetch('t', ['w1'], {
        where: { ok: true },
        groupBy: ['city'],
        aggregate: [
          { op: 'count' },
          { op: 'sum', field: 'n' },
          { op: 'avg', field: 'score' },
          { op: 'min', field: 'score' },
          { op: 'max', field: 'n' },
        ],
      });
      const got = new Map((res.lines as { g: unknown[]; a: unknown[] }[]).map((l) => [l.g[0], l.a]));
      const sel = rows.filter((r) => r.ok === true);
      const cities = [...new Set(sel.map((r) => r.city))];
      assert.equal(got.size, cities.length);
      for (const c of cities) {
        const g = sel.filter((r) => r.city === c);
        const nums = (f: string) => g.map((r) => get(r, f)).filter((v): v is number => typeof v === 'number');
        const [count, sum, avg, min, max] = got.get(c)!;
        assert.equal(count, g.length, `count for ${c}`);
        assert.equal(
          sum,
          nums('n').reduce((s, v) => s + v, 0),
        );
        const [asum, acount] = avg as [number, number];
        assert.equal(acount, nums('score').length);
        assert.ok(Math.abs(asum - nums('score').reduce((s, v) => s + v, 0)) < 1e-6);
        assert.equal(min, Math.min(...nums('score')));
        // min/max order numbers before strings (SQLite's and MongoDB's order): a numeric string outranks every number.
        const ns = g
          .map((r) => r.n)
          .filter((v): v is number | string => typeof v === 'number' || typeof v === 'string');
        assert.equal(
          max,
          ns.reduce((m, v) => (compareSql(v, m) > 0 ? v : m)),
        );
      }
    });

    it('answers a bad query with a bad-request code instead of rows', async () => {
      const res = await driver.fetch('t', ['w1'], { where: { n: { $regex: 'x' } } });
      assert.equal(res.errors.length, 1);
      assert.equal(res.errors[0].code, 'bad-request');
      assert.match(res.errors[0].error!, /\$regex/);
    });
  });

  it('answers exactly the chunks it is asked for, and names those it does not hold', async () => {
    await startWorker('w1');
    await startWorker('w2');
    const rows = makeRows(300, 11);
    const [c1, c2, c3] = chunked(rows, 100);
    // c1 on both (w1 first), c2 on both (w2 first), c3 only on w2.
    for (const w of ['w1', 'w2']) await driver.send(w, driver.post('t', c1, ['w1', 'w2'], 'chunk1'));
    for (const w of ['w2', 'w1']) await driver.send(w, driver.post('t', c2, ['w2', 'w1'], 'chunk2'));
    await driver.send('w2', driver.post('t', c3, ['w2'], 'chunk3'));
    await driver.commit(['w1', 'w2']);
    await driver.until((all) => all.filter((r) => r.type === 'POST_ACK').length === 5, 'five POST_ACKs');

    const both = await driver.fetchFrom(
      't',
      new Map([
        ['w1', ['chunk1']],
        ['w2', ['chunk2', 'chunk3']],
      ]),
    );
    assert.deepEqual(lossAndDuplicates(rows, both.lines as Row[]), { lost: 0, duplicated: 0, wrong: 0 });
    const sent = (w: string) => both.byWorker.get(w)!.reduce((n, r) => n + r.count, 0);
    assert.equal(sent('w1'), 100, 'w1 answers chunk1 only');
    assert.equal(sent('w2'), 200, 'w2 answers chunk2 and chunk3');
    const named = (w: string) => both.completed.get(w)!.flat().sort();
    assert.deepEqual(named('w1'), ['chunk1'], 'its batches name every chunk it answered');
    assert.deepEqual(named('w2'), ['chunk2', 'chunk3']);

    const onlyW1 = await driver.fetchFrom('t', new Map([['w1', ['chunk1', 'chunk2']]]));
    assert.deepEqual(
      lossAndDuplicates([...c1, ...c2], onlyW1.lines as Row[]),
      { lost: 0, duplicated: 0, wrong: 0 },
      'w1 answers for chunk2 when asked',
    );

    // chunk3 is on w2 only: w1 answers nothing of the request and says what it lacks.
    const lacking = await driver.fetchFrom('t', new Map([['w1', ['chunk1', 'chunk3']]]));
    assert.equal(lacking.lines.length, 0);
    assert.deepEqual(lacking.errors, [
      { worker: 'w1', code: 'missing', error: lacking.errors[0]?.error, missing: ['chunk3'] },
    ]);

    // Asked by token for every chunk it holds (w2: all three), in any order.
    const byToken = await driver.fetchFrom('t', new Map([['w2', [chunkSetToken(['chunk3', 'chunk1', 'chunk2'])]]]));
    assert.deepEqual(byToken.errors, []);
    assert.deepEqual(lossAndDuplicates(rows, byToken.lines as Row[]), { lost: 0, duplicated: 0, wrong: 0 });
    // A token of another set (w1's, a subset, an unknown chunk more): `unlisted`, and not one row.
    for (const set of [['chunk1', 'chunk2'], ['chunk3'], ['chunk1', 'chunk2', 'chunk3', 'chunk4']]) {
      const other = await driver.fetchFrom('t', new Map([['w2', [chunkSetToken(set)]]]));
      assert.equal(other.lines.length, 0);
      assert.deepEqual(
        other.errors.map((e) => e.code),
        ['unlisted'],
      );
    }
  });

  it('applies all of 1000 entries left unacked by a SIGKILL, losing and duplicating nothing', async () => {
    const { child, dataDir } = await startWorker('w1');
    const rows = makeRows(5000, 21);
    const chunks = chunked(rows, 5);
    assert.equal(chunks.length, 1000);
    const pipeline = driver.redis.pipeline();
    const msgs = chunks.map((c) => driver.post('t', c, ['w1']));
    for (const m of msgs) pipeline.xadd(driver.keys.workerOps('w1'), '*', ...m.toArgs());
    await pipeline.exec();
    await driver.commit(['w1']);
    // Kill it while it is part-way through.
    await driver.until((all) => all.filter((r) => r.type === 'POST_ACK').length >= 50, 'the first acks');
    child.kill('SIGKILL');
    const exit = await child.exited;
    assert.equal(exit.signal, 'SIGKILL');
    const before = await driver.groupInfo('w1');
    assert.ok(
      before.pending + before.lag > 0,
      `entries are left unacked (pending ${before.pending}, lag ${before.lag})`,
    );

    await startWorker('w1', dataDir);
    await waitFor(
      async () => {
        const g = await driver.groupInfo('w1');
        return g.pending === 0 && g.lag === 0;
      },
      { what: 'the backlog applied', timeoutMs: 60_000 },
    );
    // Applied entries are trimmed from the stream (whole 100-entry nodes at a time): the rows
    // live in SQLite now, not R more times in Redis.
    const { length } = await driver.groupInfo('w1');
    assert.ok(length < 300, `ops stream trimmed after applying: ${length} of 1001 entries left`);
    const res = await driver.fetch('t', ['w1']);
    assert.deepEqual(lossAndDuplicates(rows, res.lines as Row[]), { lost: 0, duplicated: 0, wrong: 0 });
    await driver.until(
      (all) => msgs.every((m) => all.some((r) => r.type === 'POST_ACK' && r.chunk === m.chunk)),
      'an ack for every chunk',
    );
    assert.ok(driver.replies.every((r) => r.type !== 'POST_ACK' || r.status === 'ok'));
  });

  it('applies entries whose delivery was lost with its connection before any later entry', async () => {
    const { child } = await startWorker('w1');
    const first = makeRows(40, 31, 'lost');
    const second = makeRows(40, 32, 'later');
    // Stop the worker and cut its blocking reader, so nothing of what follows reaches it.
    child.kill('SIGSTOP');
    try {
      const clients = (await driver.redis.client('LIST')) as string;
      const reader = clients.split('\n').find((l) => l.includes(` name=${prefix}:worker:w1:ops `));
      assert.ok(reader, 'the worker has a named ops reader connection');
      await driver.redis.client('KILL', 'ID', /id=(\d+)/.exec(reader)![1]);
      // A read whose reply is lost: POST + COMMIT delivered to w1 (pending) but never seen.
      await driver.send('w1', driver.post('t', first, ['w1'], undefined, 'plost'));
      await driver.commit(['w1'], 'plost');
      const stolen = (await driver.redis.xreadgroup(
        'GROUP',
        'apply',
        'w1',
        'COUNT',
        10,
        'STREAMS',
        driver.keys.workerOps('w1'),
        '>',
      )) as [string, unknown[]][];
      assert.equal(stolen[0][1].length, 2, 'both entries now pending for w1');
      // Later entries, which ioredis' resent XREADGROUP ">" returns after the reconnect.
      await driver.send('w1', driver.post('t', second, ['w1'], undefined, 'plater'));
      await driver.commit(['w1'], 'plater');
    } finally {
      child.kill('SIGCONT');
    }
    await waitFor(
      async () => {
        const g = await driver.groupInfo('w1');
        return g.pending === 0 && g.lag === 0;
      },
      { what: 'every entry applied and acked', timeoutMs: 30_000 },
    );
    const res = await driver.fetch('t', ['w1']);
    assert.deepEqual(lossAndDuplicates([...first, ...second], res.lines as Row[]), {
      lost: 0,
      duplicated: 0,
      wrong: 0,
    });
  });

  it('hides a POST until COMMIT, and ABORT removes it and refuses its late chunks', async () => {
    await startWorker('w1');
    const kept = makeRows(30, 41, 'k');
    const dropped = makeRows(30, 42, 'd');
    const pk = driver.post('t', kept, ['w1'], undefined, 'pk');
    const pd = driver.post('t', dropped, ['w1'], undefined, 'pd');
    await driver.send('w1', pk);
    await driver.send('w1', pd);
    const hidden = await driver.fetchFrom('t', new Map([['w1', [pk.chunk, pd.chunk]]]));
    assert.equal(hidden.lines.length, 0, 'uncommitted chunks are not answered');
    assert.deepEqual(
      hidden.errors.map((e) => [e.code, e.missing?.sort()]),
      [['missing', [pk.chunk, pd.chunk].sort()]],
      'asked for them, it says it does not hold them committed',
    );
    await driver.update('w1', 't', {}, { touched: true });
    await driver.commit(['w1'], 'pk');
    const abort = await driver.abort(['w1'], 'pd');
    const late = driver.post('t', makeRows(5, 43, 'l'), ['w1'], undefined, 'pd');
    await driver.send('w1', late);
    await driver.until(() => driver.acksFor(late.chunk).length === 1, 'the late chunk answered');
    assert.equal((driver.acksFor(late.chunk)[0] as PostAckMessage).status, 'error');
    assert.equal((driver.opAcks(abort)[0] as OpAckMessage).count, 30);
    const res = await driver.fetch('t', ['w1']);
    assert.deepEqual(multiset(res.lines), multiset(kept), 'the update before COMMIT did not reach uncommitted rows');
  });

  it('cuts row batches on chunk boundaries and answers an explicit chunk list', async () => {
    await startWorker('w1', undefined, { DSTORE_FETCH_BATCH_ROWS: '25' });
    const rows = makeRows(200, 51);
    const chunks = chunked(rows, 40).map((c, i) => driver.post('t', c, ['w1'], `ck${i}`));
    for (const m of chunks) await driver.send('w1', m);
    await driver.commit(['w1']);
    const res = await driver.fetch('t', ['w1']);
    const batches = res.byWorker.get('w1')!;
    assert.ok(batches.length > 1, 'several batches');
    batches.forEach((b, i) => {
      const completes = res.completed.get('w1')![i];
      const ids = new Set((respRows(b).map((l) => JSON.parse(l)) as Row[]).map((r) => r._id));
      const expectIds = new Set(chunks.filter((c) => completes.includes(c.chunk)).flatMap((c) => c.ids));
      assert.deepEqual(ids, expectIds, `batch ${b.seq} holds exactly the chunks it completes`);
    });
    const retry = await driver.fetch('t', ['w1'], {}, 10_000, ['ck1', 'ck3']);
    assert.deepEqual(lossAndDuplicates([...chunked(rows, 40)[1], ...chunked(rows, 40)[3]], retry.lines as Row[]), {
      lost: 0,
      duplicated: 0,
      wrong: 0,
    });
  });

  it('answers a backup from the snapshot its BACKUP entry began, and reads after a restart when the stream ends with it', async () => {
    const { child, dataDir } = await startWorker('w1');
    const rows = makeRows(30, 3);
    const msg = driver.post('t', rows, ['w1']);
    await driver.send('w1', msg);
    await driver.commit(['w1']);
    const mark = (type: typeof BackupMessage | typeof BackupEndMessage) =>
      driver.send(
        'w1',
        build(type as typeof BackupMessage, { op: ulid(), backup: 'b1', idleMs: 60_000, replyTo: driver.replyTo }),
      );
    await mark(BackupMessage);
    // After the cut: an UPDATE of every row and a new POST; the snapshot sees neither.
    await driver.update('w1', 't', {}, { after: true });
    const later = driver.post('t', makeRows(5, 3, 'later'), ['w1'], ulid(), 'plater');
    await driver.send('w1', later);
    await driver.commit(['w1'], 'plater');
    await driver.until(() => driver.acksFor(later.chunk).length === 1, 'the later POST acked');
    const snap = await driver.fetch('t', ['w1'], { snapshot: 'b1' } as QuerySpec, 5000, [msg.chunk]);
    assert.deepEqual(snap.errors, []);
    assert.deepEqual(lossAndDuplicates(rows, snap.lines as Row[]), { lost: 0, duplicated: 0, wrong: 0 });
    const late = await driver.fetch('t', ['w1'], { snapshot: 'b1' } as QuerySpec, 5000, [later.chunk]);
    assert.equal(late.errors[0]?.code, 'missing', 'a chunk committed after the cut is not in the snapshot');
    const now = await driver.fetch('t', ['w1'], {}, 5000, [msg.chunk]);
    assert.ok((now.lines as Row[]).every((r) => r.after === true));
    await mark(BackupEndMessage);
    await driver.xadd('w1', ['type', 'NOPE']);
    await waitFor(
      async () => (await driver.groupInfo('w1')).pending === 0 && (await driver.groupInfo('w1')).lag === 0,
      {
        what: 'the marks applied',
      },
    );
    const gone = await driver.fetch('t', ['w1'], { snapshot: 'b1' } as QuerySpec, 5000, [msg.chunk]);
    assert.equal(gone.errors[0]?.code, 'no-snapshot');
    // Restarted, its stream ending with entries that wrote nothing to SQLite: reads are answered.
    await child.stop();
    children.splice(children.indexOf(child), 1);
    await startWorker('w1', dataDir);
    const after = await driver.fetch('t', ['w1'], {}, 3000, [msg.chunk]);
    assert.deepEqual(after.errors, []);
    assert.equal(after.lines.length, rows.length);
  });

  it('dead-letters a malformed entry with its reason and applies the next good one', async () => {
    await startWorker('w1');
    await driver.xadd('w1', ['type', 'NOPE', 'x', '1']);
    await driver.xadd('w1', ['type', 'POST', 'chunk', 'c1', 'table', 'bad:name']);
    const upd = await driver.xadd('w1', [
      'type',
      'UPDATE',
      'op',
      'o1',
      'table',
      't',
      'where',
      '{"a":{"$bogus":1}}',
      'set',
      '{"a":1}',
      'replyTo',
      driver.replyTo,
    ]);
    const rows = makeRows(10, 5);
    const good = driver.post('t', rows, ['w1']);
    await driver.send('w1', good);
    await driver.commit(['w1']);
    await driver.until(() => driver.acksFor(good.chunk).length === 1, 'the good POST acked');
    const dead = await driver.deadLetters();
    assert.equal(dead.length, 3);
    assert.match(dead[0].reason, /unknown message type "NOPE"/);
    assert.match(dead[1].reason, /invalid POST/);
    assert.match(dead[2].reason, /\$bogus/);
    assert.equal(dead[2].id, upd);
    assert.equal(dead[2].stream, driver.keys.workerOps('w1'));
    const errAck = driver.opAcks('o1')[0] as OpAckMessage;
    assert.equal(errAck.status, 'error', 'a refused op with a reply stream is answered with an error');
    const res = await driver.fetch('t', ['w1']);
    assert.deepEqual(lossAndDuplicates(rows, res.lines as Row[]), { lost: 0, duplicated: 0, wrong: 0 });
    assert.equal((await driver.groupInfo('w1')).pending, 0);
  });

  it('refuses a chunk holding an _id the shard already has, and keeps none of its rows', async () => {
    await startWorker('w1');
    const rows = makeRows(10, 9);
    const first = driver.post('t', rows, ['w1']);
    await driver.send('w1', first);
    await driver.commit(['w1']);
    const clash = driver.post('t', [{ _id: 'new1', x: 1 }, rows[3]], ['w1']);
    await driver.send('w1', clash);
    await driver.until(() => driver.acksFor(clash.chunk).length === 1, 'the clashing chunk answered');
    const ack = driver.acksFor(clash.chunk)[0] as PostAckMessage;
    assert.equal(ack.status, 'error');
    assert.match(ack.error!, /duplicate _id "r0000003"/);
    const refused = await driver.fetch('t', ['w1'], {}, 10_000, [clash.chunk]);
    assert.deepEqual(
      refused.errors.map((e) => e.missing),
      [[clash.chunk]],
      'the refused chunk is not held',
    );
    const res = await driver.fetch('t', ['w1'], {}, 10_000, [first.chunk]);
    assert.deepEqual(lossAndDuplicates(rows, res.lines as Row[]), { lost: 0, duplicated: 0, wrong: 0 });
  });

  it('keeps its generated id across restarts and stops cleanly on SIGTERM', async () => {
    const dataDir = tempDir('shard-gen');
    const child = startWorkerProcess({ redisUrl: redis.url, prefix, id: '', dataDir });
    children.push(child);
    const id = await waitFor(
      async () => {
        const ids = await driver.redis.zrange(driver.keys.workers, 0, -1);
        return ids[0];
      },
      { what: 'a generated worker id' },
    );
    assert.match(id, /^w-[0-9a-f]{8}$/);
    child.kill('SIGTERM');
    assert.equal((await child.exited).code, 0);
    assert.equal((await driver.status(id))?.state, 'stopped');
    const again = startWorkerProcess({ redisUrl: redis.url, prefix, id: '', dataDir });
    children.push(again);
    await waitFor(async () => (await driver.status(id))?.pid === again.pid, { what: 'the same id after restart' });
    assert.equal(path.basename(dataDir).length > 0, true);
  });

  it('exits 1 with one line naming a wrong setting', async () => {
    const child = startWorkerProcess({
      redisUrl: redis.url,
      prefix,
      id: 'w9',
      dataDir: tempDir('bad'),
      env: { DSTORE_HEARTBEAT_MS: 'often' },
    });
    children.push(child);
    const exit = await child.exited;
    assert.equal(exit.code, 1);
    assert.match(child.tail(5), /DSTORE_HEARTBEAT_MS: must be a whole number/);
  });

  it('does not answer reads with a stale view: a FETCH sees every entry written before it', async () => {
    await startWorker('w1');
    const rows = makeRows(2000, 31);
    const p = driver.redis.pipeline();
    for (const c of chunked(rows, 10))
      p.xadd(driver.keys.workerOps('w1'), '*', ...driver.post('t', c, ['w1']).toArgs());
    await p.exec();
    await driver.commit(['w1']);
    // No waiting for acks: the worker must catch up before it answers.
    const res = await driver.fetch('t', ['w1'], { aggregate: [{ op: 'count' }] });
    assert.deepEqual(res.lines, [{ g: [], a: [2000] }]);
  });

  it('ignores a FETCH addressed to another worker', async () => {
    await startWorker('w1');
    const m = driver.post('t', makeRows(5), ['w1']);
    await driver.send('w1', m);
    await driver.commit(['w1']);
    await driver.until((all) => all.length === 2, 'the acks');
    const req = ulid();
    await driver.redis.publish(
      driver.keys.workerFetch('w1'),
      JSON.stringify({
        type: 'FETCH',
        req,
        worker: 'w2',
        replyTo: driver.replyTo,
        table: 't',
        chunks: m.chunk,
        timeoutMs: '1000',
      }),
    );
    await new Promise((r) => setTimeout(r, 500));
    await driver.pull(100);
    assert.equal(driver.replies.filter((r) => r.type === 'FETCH_RESP').length, 0);
  });
});
