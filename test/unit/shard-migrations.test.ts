import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { SHARD_VERSION } from '../../worker/shard-migrations';
import { ShardStore } from '../../worker/shard-store';
import { projectRoot } from '../support/processes';

/** A shard written by dstore before schema versions (commit baf9c91): 3 chunks of cars, one moved, one uncommitted. */
const FIXTURE = path.join(projectRoot(), 'test', 'fixtures', 'shard-v0', 'shard.sqlite');

describe('shard migrations', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dstore-migrate-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('brings a shard written before versioning to the current schema, keeping its rows and chunks', () => {
    fs.copyFileSync(FIXTURE, path.join(dir, 'shard.sqlite'));
    const store = new ShardStore(dir);
    try {
      assert.equal(store.created, false);
      assert.equal(store.migratedFrom, 0);
      assert.deepEqual([...store.committedChunks('cars')].sort(), ['chunk-a', 'chunk-b']);
      assert.match(store.shardId(), /^s-/);
      const digests = [...store.digests(['chunk-a', 'chunk-b', 'chunk-c', 'nope'])];
      assert.equal(digests[0].stored, digests[0].actual, 'the stored digest still matches the rows');
      assert.match(digests[0].stored!, /^d2:\d+:/, 'stored digests were recomputed in the current version');
      assert.equal(digests[1].stored, digests[1].actual);
      assert.deepEqual(
        digests.slice(2).map((d) => d.error),
        ['not committed', 'not held'],
      );
    } finally {
      store.close();
    }
    const db = new Database(path.join(dir, 'shard.sqlite'), { readonly: true });
    try {
      assert.equal(db.pragma('user_version', { simple: true }), SHARD_VERSION);
      const cols = db
        .prepare<[], { name: string }>("SELECT name FROM pragma_table_info('_chunks')")
        .all()
        .map((c) => c.name);
      assert.deepEqual(cols, ['chunk', 'tbl', 'post', 'replicas', 'rows', 'committed', 'applied_at', 'digest']);
      const docs = db
        .prepare<[], { doc: string }>('SELECT doc FROM t_1 ORDER BY _id')
        .all()
        .map((r) => JSON.parse(r.doc) as { hp: number; fast?: boolean });
      assert.equal(docs.length, 15);
      assert.equal(
        docs.filter((d) => d.fast).length,
        7,
        'the UPDATE before versioning is still there (committed rows with hp >= 103)',
      );
    } finally {
      db.close();
    }
  });

  it('opens a migrated file again without changing it, and a new file at the current version', () => {
    const a = new ShardStore(dir);
    assert.equal(a.migratedFrom, 0);
    a.close();
    const b = new ShardStore(dir);
    assert.equal(b.migratedFrom, SHARD_VERSION);
    b.close();
  });

  it('refuses a shard written by a newer dstore, naming the file and both versions', () => {
    const file = path.join(dir, 'shard.sqlite');
    const db = new Database(file);
    db.pragma(`user_version = ${SHARD_VERSION + 1}`);
    db.close();
    assert.throws(
      () => new ShardStore(dir),
      new RegExp(`shard schema version ${SHARD_VERSION + 1}, newer than this dstore's ${SHARD_VERSION}`),
    );
  });
});
