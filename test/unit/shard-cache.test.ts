import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { PostMessage } from '../../common/messages';
import { RejectedError } from '../../common/errors';
import { ShardStore } from '../../worker/shard-store';

const replyTo = 'x:coord:c:replies';

/**
 * The shard keeps each table's committed chunk list and its `_state` values in memory
 * between writes. Every answer is compared with what a separate connection to the same
 * file reads at that moment, after each kind of write that changes chunks.
 */
describe('shard store caches', () => {
  let dir: string;
  let store: ShardStore;
  let other: Database.Database;
  let entry = 0;
  const next = () => `${++entry}-0`;

  /** Committed chunks of `table`, as another connection reads them. */
  const fromFile = (table: string) =>
    other
      .prepare<[string], { chunk: string }>('SELECT chunk FROM _chunks WHERE tbl = ? AND committed = 1 ORDER BY chunk')
      .all(table)
      .map((r) => r.chunk);
  const cached = (table: string) => [...store.committedChunks(table)].sort();
  const same = (table: string) => {
    const want = fromFile(table);
    assert.deepEqual(cached(table), want);
    return want.length;
  };
  const post = (table: string, chunk: string, p: string, ids: string[]) =>
    store.insertChunk(
      Object.assign(new PostMessage(), {
        chunk,
        post: p,
        table,
        replicas: ['w1', 'w2'],
        replyTo,
        ids,
        rows: ids.map((_id) => JSON.stringify({ _id })),
      }),
      next(),
    );

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dstore-shard-cache-'));
    store = new ShardStore(dir, { sync: 'normal' });
    other = new Database(path.join(dir, 'shard.sqlite'), { readonly: true });
  });

  afterEach(() => {
    other.close();
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('follows inserts, commits, aborts, replica changes and drops', () => {
    assert.equal(same('t'), 0);
    post('t', 'c1', 'p1', ['a', 'b']);
    assert.equal(same('t'), 0, 'an uncommitted chunk is not listed');
    store.commitPost('op1', 'p1', next());
    assert.equal(same('t'), 1);
    post('t', 'c2', 'p1', ['c']);
    assert.equal(same('t'), 2, 'a late chunk of a committed POST is listed at once');
    post('t', 'c3', 'p2', ['d']);
    store.abortPost('op2', 'p2', next());
    assert.equal(same('t'), 2);
    store.setReplicas('op3', 'c1', ['w2', 'w3'], next());
    assert.equal(same('t'), 2);
    store.dropChunks('op4', ['c2'], next());
    assert.equal(same('t'), 1);
    store.dropTable('op5', 't', next());
    assert.equal(same('t'), 0);
    assert.equal(store.appliedId(), `${entry}-0`);
  });

  it('is not left stale by a write that rolls back', () => {
    post('t', 'c1', 'p1', ['a']);
    store.commitPost('op1', 'p1', next());
    assert.equal(same('t'), 1);
    // Same _id in another chunk: the whole chunk is refused and nothing changes.
    assert.throws(() => post('t', 'c2', 'p1', ['b', 'a']), RejectedError);
    assert.equal(same('t'), 1);
    post('t', 'c2', 'p1', ['b']);
    assert.equal(same('t'), 2);
  });
});

describe('shard identity', () => {
  it('is made with the file, kept across reopenings, and renewed on demand', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dstore-shard-id-'));
    try {
      const a = new ShardStore(dir);
      assert.equal(a.created, true);
      const id = a.shardId();
      assert.match(id, /^s-[0-9a-f]{16}$/);
      a.close();
      const b = new ShardStore(dir);
      assert.equal(b.created, false);
      assert.equal(b.shardId(), id, 'the same file keeps its identity');
      const renewed = b.renewShardId();
      assert.notEqual(renewed, id);
      assert.equal(b.shardId(), renewed);
      b.close();
      fs.rmSync(path.join(dir, 'shard.sqlite'));
      const c = new ShardStore(dir);
      assert.equal(c.created, true);
      assert.notEqual(c.shardId(), renewed, 'a new file is a new shard');
      c.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
