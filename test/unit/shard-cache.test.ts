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

  /** Committed chunks of `table` with their lists, as another connection reads them. */
  const fromFile = (table: string) =>
    other
      .prepare<[string], { chunk: string; replicas: string; since: string; prev_replicas: string | null }>(
        'SELECT chunk, replicas, since, prev_replicas FROM _chunks WHERE tbl = ? AND committed = 1 ORDER BY chunk',
      )
      .all(table)
      .map((r) => `${r.chunk}:${r.replicas}@${r.since}/${r.prev_replicas ?? ''}`);
  const cached = (table: string) =>
    [...store.chunksOf(table)].sort((a, b) => (a.chunk < b.chunk ? -1 : 1)).map((c) => `${c.chunk}:${c.replicas.join(',')}@${c.since}/${c.prev?.join(',') ?? ''}`);
  const same = (table: string) => {
    const want = fromFile(table);
    assert.deepEqual(cached(table), want);
    return want.length;
  };
  const post = (table: string, chunk: string, p: string, ids: string[]) =>
    store.insertChunk(
      Object.assign(new PostMessage(), { chunk, post: p, table, replicas: ['w1', 'w2'], replyTo, ids, rows: ids.map((_id) => JSON.stringify({ _id })) }),
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

  it('follows inserts, commits, aborts, replica changes, moves and drops', () => {
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
    same('t');
    assert.deepEqual(store.chunksOf('t').find((c) => c.chunk === 'c1')?.replicas, ['w2', 'w3']);
    assert.equal(store.applyMoves([{ id: '900-0', chunk: 'c2', replicas: ['w4', 'w1'] }]), 1);
    same('t');
    assert.equal(store.movesCursor(), '900-0');
    store.dropChunks('op4', ['c2'], next(), '901-0');
    assert.equal(same('t'), 1);
    assert.equal(store.minGen(), '901-0');
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
