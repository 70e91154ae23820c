import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { VERSION } from '../../common/version';
import type { TableIndexes } from '../../common/indexes';
import type { ChangeRetention } from '../../common/changes';
import {
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  fileDigest,
  MANIFEST,
  readManifest,
  tableFile,
  TableFileWriter,
  tableRows,
  verifyTable,
  type Manifest,
  type ManifestTable,
} from '../backup-files';
import { formatBytes, formatCount, formatDuration } from '../format';
import { CliError, clientFor, tablePath, withUrlOption, type HttpClient } from '../http-client';
import { ProgressLine } from '../progress';

/** The cut as `POST /admin/backups` answers it (coordinator/backup.ts). */
interface BackupCut {
  backup: string;
  cutAt: number;
  marks: Record<string, string>;
  tables: {
    def: {
      name: string;
      schema?: Record<string, string>;
      encrypted?: string[];
      keyCheck?: string;
      defaults?: Record<string, unknown>;
      indexes?: TableIndexes;
      changes?: ChangeRetention;
    };
    chunks: Record<string, string[]>;
  }[];
}

/** `dstore backup create|verify|restore`. */
export function registerBackupCommand(program: Command): void {
  const group = program
    .command('backup')
    .summary('back up every table to a directory, check a backup, restore one')
    .description(
      'a consistent cut of every table, taken while reads and writes go on (docs/operations.md, "Backups"); ' +
        'create and restore need the admin role',
    );
  const create = group
    .command('create <dir>')
    .description(
      'write a backup of every table into DIR (a new or empty directory): manifest.json and one SQLite file per table',
    );
  withUrlOption(create).action(async (dir: string, _o: unknown, c: Command) => {
    const m = await createBackup(clientFor(c), dir);
    const rows = m.tables.reduce((n, t) => n + t.rows, 0);
    const bytes = m.tables.reduce((n, t) => n + t.bytes, 0);
    process.stdout.write(
      `backed up ${m.tables.length} table(s), ${formatCount(rows)} rows (${formatBytes(bytes)}) as of ${m.cut.at} into ${dir}\n`,
    );
  });
  group
    .command('verify <dir>')
    .description("check every file of a backup against its manifest (size, SHA-256, SQLite's integrity check, rows)")
    .action(async (dir: string) => {
      const m = readManifest(dir);
      const bad: string[] = [];
      for (const t of m.tables) {
        const wrong = await verifyTable(dir, t);
        if (wrong) bad.push(wrong);
      }
      if (bad.length > 0) throw new CliError(`backup ${dir} is damaged: ${bad.join('; ')}`);
      process.stdout.write(
        `backup ${dir} is whole: ${m.tables.length} table(s), ${formatCount(m.tables.reduce((n, t) => n + t.rows, 0))} rows as of ${m.cut.at}\n`,
      );
    });
  const restore = group
    .command('restore <dir>')
    .description(
      'restore the tables of a backup into this cluster (any number of workers, any R): each table is created, ' +
        'its rows POSTed in one request (all or nothing) and its indexes built. A table that exists is refused',
    )
    .option('--table <name>', 'restore only this table')
    .option('--as <name>', 'restore the table under this name (with --table, or a backup of one table)');
  withUrlOption(restore).action(async (dir: string, o: { table?: string; as?: string }, c: Command) => {
    const done = await restoreBackup(clientFor(c, { table: '--table', as: '--as' }), dir, o);
    for (const d of done)
      process.stdout.write(`restored ${d.name}${d.as !== d.name ? ` as ${d.as}` : ''}: ${formatCount(d.rows)} rows\n`);
  });
}

/** Runs a backup into `dir`; returns its manifest. The backup is ended on the cluster however it goes. */
export async function createBackup(client: HttpClient, dir: string): Promise<Manifest> {
  if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0)
    throw new CliError(`${dir} is not empty; give backup create a new or empty directory`);
  fs.mkdirSync(path.join(dir, 'tables'), { recursive: true });
  const started = Date.now();
  const cut = await client.request<BackupCut>('POST', '/admin/backups');
  const state = { table: '', done: 0, rows: 0 };
  const progress = new ProgressLine(() => {
    const secs = (Date.now() - started) / 1000;
    return `table ${state.done + 1}/${cut.tables.length} ${state.table}  ${formatCount(state.rows)} rows  ${formatCount(state.rows / Math.max(secs, 0.001))} rows/s  ${formatDuration(Date.now() - started)}`;
  });
  progress.start();
  try {
    const tables: ManifestTable[] = [];
    for (const t of cut.tables) {
      state.table = t.def.name;
      tables.push(await backupTable(client, dir, cut.backup, t, (n) => (state.rows += n)));
      state.done++;
    }
    const manifest: Manifest = {
      format: BACKUP_FORMAT,
      formatVersion: BACKUP_FORMAT_VERSION,
      dstoreVersion: VERSION,
      backup: cut.backup,
      cut: { at: new Date(cut.cutAt).toISOString(), ms: cut.cutAt, marks: cut.marks },
      completedAt: new Date().toISOString(),
      tables,
    };
    // Last, and whole: a directory without a manifest is a backup that did not finish.
    const tmp = path.join(dir, `${MANIFEST}.partial`);
    fs.writeFileSync(tmp, JSON.stringify(manifest, null, 2) + '\n');
    fs.renameSync(tmp, path.join(dir, MANIFEST));
    return manifest;
  } finally {
    progress.stop();
    await client.request('DELETE', `/admin/backups/${cut.backup}`).catch(() => undefined);
  }
}

async function backupTable(
  client: HttpClient,
  dir: string,
  backup: string,
  t: BackupCut['tables'][number],
  onRows: (n: number) => void,
): Promise<ManifestTable> {
  const name = t.def.name;
  const file = tableFile(name);
  const writer = new TableFileWriter(path.join(dir, file));
  let trailer: { table: string; rows: number } | undefined;
  try {
    const lines = client.streamLineBatches(
      `/admin/backups/${backup}/tables/${encodeURIComponent(name)}`,
      undefined,
      'GET',
    );
    for await (const batch of lines) {
      const last = batch[batch.length - 1];
      if (last.startsWith('{"_backup":') || last.startsWith('{"_error":')) {
        const end = JSON.parse(batch.pop()!) as { _backup?: typeof trailer; _error?: { message: string } };
        if (end._error) throw new CliError(`reading table ${name} failed: ${end._error.message}`);
        trailer = end._backup;
      }
      writer.add(batch);
      onRows(batch.length);
    }
    if (!trailer) throw new CliError(`the rows of table ${name} were cut off (no end line); run the backup again`);
    if (trailer.rows !== writer.rows)
      throw new CliError(`table ${name}: the coordinator sent ${trailer.rows} rows, ${writer.rows} arrived`);
    writer.finish();
  } catch (e) {
    writer.discard();
    throw e;
  }
  const { sha256, bytes } = await fileDigest(path.join(dir, file));
  return {
    name,
    ...(t.def.schema ? { schema: t.def.schema } : {}),
    ...(t.def.encrypted?.length ? { encrypted: t.def.encrypted, keyCheck: t.def.keyCheck } : {}),
    ...(t.def.defaults ? { defaults: t.def.defaults } : {}),
    ...(t.def.indexes && Object.keys(t.def.indexes.indexes).length > 0 ? { indexes: t.def.indexes.indexes } : {}),
    ...(t.def.changes ? { changes: t.def.changes } : {}),
    chunks: Object.keys(t.chunks).sort(),
    rows: writer.rows,
    file,
    bytes,
    sha256,
  };
}

/**
 * Restores a backup's tables (all, or `--table`, under `--as`). Checks first, before anything
 * is created: every file against the manifest, the encryption key, and that no target table
 * exists. Then per table: create it (its columns added with defaults by PATCH, as they were
 * made), POST its rows in one request (a failure leaves the POST stored not at all, and the
 * table created here is dropped again), build its indexes, and turn its change stream on
 * when it had one (after the rows: a restore emits no events).
 */
export async function restoreBackup(
  client: HttpClient,
  dir: string,
  o: { table?: string; as?: string },
): Promise<{ name: string; as: string; rows: number }[]> {
  const m = readManifest(dir);
  let tables = m.tables;
  if (o.table !== undefined) {
    tables = tables.filter((t) => t.name === o.table);
    if (tables.length === 0)
      throw new CliError(
        `--table ${o.table}: the backup holds no such table; it holds ${m.tables.map((t) => t.name).join(', ') || 'none'}`,
      );
  }
  if (o.as !== undefined && tables.length !== 1)
    throw new CliError('--as renames one table: give --table too (the backup holds several)');
  for (const t of tables) {
    const wrong = await verifyTable(dir, t);
    if (wrong) throw new CliError(`backup ${dir} is damaged: ${wrong}; nothing was restored`);
  }
  const encrypted = tables.filter((t) => t.encrypted?.length);
  if (encrypted.length > 0) {
    const { keyCheck } = await client.request<{ keyCheck: string | null }>('GET', '/admin/encryption');
    const wrong = encrypted.filter((t) => t.keyCheck !== keyCheck);
    if (wrong.length > 0)
      throw new CliError(
        keyCheck === null
          ? `table(s) ${wrong.map((t) => t.name).join(', ')} have encrypted columns and the coordinator has no DSTORE_ENCRYPTION_KEY; start it with the key the backup was taken with. Nothing was restored`
          : `table(s) ${wrong.map((t) => t.name).join(', ')} were encrypted with another key than the coordinator's DSTORE_ENCRYPTION_KEY (key check ${wrong[0].keyCheck}, the coordinator's ${keyCheck}); start it with the key the backup was taken with. Nothing was restored`,
      );
  }
  const target = (t: ManifestTable) => o.as ?? t.name;
  for (const t of tables) {
    const exists = await client.request('GET', tablePath(target(t))).then(
      () => true,
      (e: unknown) => {
        if ((e as { status?: number }).status === 404) return false;
        throw e;
      },
    );
    if (exists)
      throw new CliError(
        `table ${target(t)} exists; restore it under another name (--table ${t.name} --as <new name>) or drop it first (a restore that was killed leaves its table empty). Nothing was restored`,
      );
  }
  const done: { name: string; as: string; rows: number }[] = [];
  for (const t of tables) {
    const rows = await restoreTable(client, dir, t, target(t));
    done.push({ name: t.name, as: target(t), rows });
  }
  return done;
}

async function restoreTable(client: HttpClient, dir: string, t: ManifestTable, as: string): Promise<number> {
  const defaulted = new Set(Object.keys(t.defaults ?? {}));
  const schema = t.schema
    ? Object.fromEntries(
        Object.entries(t.schema)
          .filter(([c]) => !defaulted.has(c))
          .map(([c, type]) => [c, t.encrypted?.includes(c) ? `${type}:encrypted` : type]),
      )
    : undefined;
  await client.request('PUT', tablePath(as), schema ? { schema } : {});
  try {
    if (defaulted.size > 0) {
      const addColumns = Object.fromEntries(
        [...defaulted].map((c) => [c, { type: t.schema?.[c] ?? 'json', default: t.defaults![c] }]),
      );
      await client.request('PATCH', tablePath(as), { addColumns });
    }
    const query = t.encrypted?.length ? `?ciphertextOf=${encodeURIComponent(t.name)}` : '';
    const batches = tableRows(dir, t);
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = batches.next();
        if (next.done) controller.close();
        else controller.enqueue(enc.encode(next.value.join('\n') + '\n'));
      },
      cancel() {
        batches.return(undefined);
      },
    });
    const r = await client.request<{ inserted: number }>('POST', tablePath(as, '/records') + query, {
      contentType: 'application/x-ndjson',
      body,
    });
    if (r.inserted !== t.rows)
      throw new CliError(`table ${as}: ${r.inserted} rows were stored, the backup holds ${t.rows}`);
  } catch (e) {
    // Created here, and holding nothing (the POST is all or nothing): dropped again.
    await client.request('DELETE', tablePath(as)).catch(() => undefined);
    throw e;
  }
  for (const [index, spec] of Object.entries(t.indexes ?? {}))
    await client.request('PUT', tablePath(as, `/indexes/${encodeURIComponent(index)}`), { fields: spec.fields });
  // Changes on once the rows are in: a restore is not a change to watch.
  if (t.changes) await client.request('PATCH', tablePath(as), { changes: t.changes });
  return t.rows;
}
