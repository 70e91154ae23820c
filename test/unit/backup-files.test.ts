/**
 * The backup directory format (cli/backup-files.ts): table files, the manifest checks, and
 * who may send ciphertext to be decrypted (a restore's POST).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import {
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  fileDigest,
  idOf,
  readManifest,
  tableRows,
  TableFileWriter,
  verifyTable,
  type ManifestTable,
} from '../../cli/backup-files';
import { requiredAccess } from '../../coordinator/api/auth';
import { tempDir } from '../support/processes';

async function table(dir: string, rows: string[]): Promise<ManifestTable> {
  fs.mkdirSync(path.join(dir, 'tables'), { recursive: true });
  const w = new TableFileWriter(path.join(dir, 'tables/t.sqlite'));
  w.add(rows);
  w.finish();
  const d = await fileDigest(path.join(dir, 'tables/t.sqlite'));
  return { name: 't', chunks: [], rows: rows.length, file: 'tables/t.sqlite', ...d };
}

describe('backup files', () => {
  it('reads the _id off a stored row, escaped ones included', () => {
    assert.equal(idOf('{"_id":"a-1","x":1}'), 'a-1');
    assert.equal(idOf('{"_id":"say \\"hi\\"","x":1}'), 'say "hi"');
    assert.equal(idOf('{"_id":"\\u00e9t\\u00e9"}'), 'été');
    assert.equal(idOf('{"x":1,"_id":"late"}'), 'late');
    assert.throws(() => idOf('{"x":1}'), /without _id/);
  });

  it('writes each row once, in _id order, and refuses a row sent twice', async () => {
    const dir = tempDir('backup-files');
    const rows = ['{"_id":"b","v":2}', '{"_id":"a","v":1}', '{"_id":"c","v":"x, \\"y\\""}'];
    const t = await table(dir, rows);
    assert.deepEqual([...tableRows(dir, t, 2)].flat(), [rows[1], rows[0], rows[2]]);
    assert.equal(fs.existsSync(path.join(dir, 'tables/t.sqlite.partial')), false);
    const w = new TableFileWriter(path.join(dir, 'tables/dup.sqlite'));
    w.add(['{"_id":"a"}', '{"_id":"a"}']);
    assert.throws(() => w.finish(), /sent row "a" twice/);
    w.discard();
    assert.equal(fs.existsSync(path.join(dir, 'tables/dup.sqlite.partial')), false);
  });

  it('verify finds a changed byte, a truncated file, a missing file and a wrong row count', async () => {
    const dir = tempDir('backup-verify');
    const t = await table(
      dir,
      Array.from({ length: 500 }, (_, i) => JSON.stringify({ _id: `r${i}`, v: i })),
    );
    assert.equal(await verifyTable(dir, t), undefined);
    assert.match((await verifyTable(dir, { ...t, rows: 499 }))!, /holds 500 rows, the manifest says 499/);
    const file = path.join(dir, t.file);
    const good = fs.readFileSync(file);
    const flipped = Buffer.from(good);
    flipped[100] ^= 1;
    fs.writeFileSync(file, flipped);
    assert.match((await verifyTable(dir, t))!, /does not match its checksum/);
    fs.writeFileSync(file, good.subarray(0, good.length - 10));
    assert.match((await verifyTable(dir, t))!, /bytes, the manifest says/);
    fs.rmSync(file);
    assert.match((await verifyTable(dir, t))!, /is missing/);
    // A file whose checksum matches the manifest but that is not a backup table.
    const other = path.join(dir, 'tables/other.sqlite');
    new Database(other).exec('CREATE TABLE x (a)');
    const d = await fileDigest(other);
    assert.match(
      (await verifyTable(dir, { ...t, file: 'tables/other.sqlite', ...d }))!,
      /cannot be read as a backup table/,
    );
  });

  it('refuses a directory without a manifest, another format and a newer version', () => {
    const dir = tempDir('backup-manifest');
    assert.throws(() => readManifest(dir), /manifest.json does not exist.*did not finish/);
    const write = (m: unknown) => fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(m));
    write({ format: 'other' });
    assert.throws(() => readManifest(dir), /is not a dstore backup manifest/);
    write({ format: BACKUP_FORMAT, formatVersion: BACKUP_FORMAT_VERSION + 1, dstoreVersion: '9.9.9', tables: [] });
    assert.throws(
      () => readManifest(dir),
      /format version 2; this dstore reads version 1\. Use the dstore version that wrote it \(9\.9\.9\)/,
    );
    fs.writeFileSync(path.join(dir, 'manifest.json'), '{"format":');
    assert.throws(() => readManifest(dir), /is not valid JSON/);
  });

  it('lets only admins send ciphertext to be decrypted', () => {
    assert.equal(requiredAccess('POST', '/tables/:name/records', '/tables/t/records'), 'write');
    assert.equal(requiredAccess('POST', '/tables/:name/records', '/tables/t/records?ciphertextOf=t'), 'admin');
    assert.equal(
      requiredAccess('POST', '/tables/:name/records', '/tables/t/records?onConflict=merge&ciphertextOf=s'),
      'admin',
    );
    assert.equal(requiredAccess('POST', '/admin/backups', '/admin/backups'), 'admin');
    // Watching a table's changes is a read.
    assert.equal(requiredAccess('GET', '/tables/:name/changes', '/tables/t/changes?after=1-0.1'), 'read');
  });
});
