import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import type { TableIndexes } from '../common/indexes';
import { CliError } from './http-client';
import { storedRowId, type ChangeRetention } from '../common/changes';

/** The format a backup directory is written in; a reader refuses any other. */
export const BACKUP_FORMAT = 'dstore-backup';
export const BACKUP_FORMAT_VERSION = 1;
export const MANIFEST = 'manifest.json';

/** One table of a backup, as `manifest.json` lists it. */
export interface ManifestTable {
  name: string;
  /** Column → type; absent: schemaless. */
  schema?: Record<string, string>;
  /** Columns stored encrypted; their values in the file are ciphertext. */
  encrypted?: string[];
  /** The key check value (an HMAC of the key, not the key) the encrypted columns need. */
  keyCheck?: string;
  /** Columns added with a default (PATCH /tables/:name): their defaults. */
  defaults?: Record<string, unknown>;
  indexes?: TableIndexes['indexes'];
  /** Its change stream's retention, when it kept one (the events themselves are not backed up). */
  changes?: ChangeRetention;
  /** The chunks of the table at the cut. */
  chunks: string[];
  rows: number;
  /** The SQLite file, relative to the directory. */
  file: string;
  bytes: number;
  sha256: string;
}

/** `manifest.json`: what a backup holds, and how to check it. */
export interface Manifest {
  format: typeof BACKUP_FORMAT;
  formatVersion: number;
  dstoreVersion: string;
  backup: string;
  /** The cut: Redis time (ISO and ms) and each worker's BACKUP entry on its ops stream. */
  cut: { at: string; ms: number; marks: Record<string, string> };
  /** When the last file was written. */
  completedAt: string;
  tables: ManifestTable[];
}

/** The file of a table inside a backup directory (table names hold no `/`). */
export function tableFile(name: string): string {
  return `tables/${name}.sqlite`;
}

/**
 * Writes one table's rows into a SQLite file: `rows(_id TEXT PRIMARY KEY, doc TEXT)`, one
 * row per stored row, `doc` its JSON text as stored. A row given twice fails (the primary
 * key), so a backup never holds a row twice. The rows go to a scratch file first, which
 * `VACUUM INTO` then writes compact and whole as the final file.
 */
export class TableFileWriter {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement<[string, string]>;
  private readonly scratch: string;
  private pending: [string, string][] = [];
  rows = 0;

  constructor(private readonly file: string) {
    this.scratch = `${file}.partial`;
    fs.rmSync(this.scratch, { force: true });
    this.db = new Database(this.scratch);
    this.db.pragma('journal_mode = OFF');
    this.db.pragma('synchronous = OFF');
    this.db.exec('CREATE TABLE rows (_id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID');
    this.insert = this.db.prepare('INSERT INTO rows (_id, doc) VALUES (?, ?)');
  }

  /** Adds rows (JSON text, `_id` first as dstore stores them). */
  add(lines: readonly string[]): void {
    for (const line of lines) this.pending.push([idOf(line), line]);
    this.rows += lines.length;
    if (this.pending.length >= 10_000) this.flush();
  }

  /** Writes the final file and removes the scratch one. */
  finish(): void {
    this.flush();
    fs.rmSync(this.file, { force: true });
    this.db.prepare('VACUUM INTO ?').run(this.file);
    this.db.close();
    fs.rmSync(this.scratch, { force: true });
  }

  /** Gives up: removes the scratch file. */
  discard(): void {
    if (this.db.open) this.db.close();
    fs.rmSync(this.scratch, { force: true });
  }

  private flush(): void {
    const rows = this.pending;
    this.pending = [];
    this.db.transaction(() => {
      for (const [id, doc] of rows) {
        try {
          this.insert.run(id, doc);
        } catch (e) {
          if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY')
            throw new CliError(`the backup was sent row ${JSON.stringify(id)} twice; nothing is kept, run it again`);
          throw e;
        }
      }
    })();
  }
}

/** The `_id` of a stored row. */
export function idOf(line: string): string {
  try {
    return storedRowId(line);
  } catch (e) {
    throw new CliError(`the coordinator sent ${(e as Error).message}`);
  }
}

/** SHA-256 (hex) and size of a file, read in pieces. */
export async function fileDigest(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  for await (const chunk of fs.createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** Reads and checks `manifest.json` of a backup directory; a CliError says what is wrong. */
export function readManifest(dir: string): Manifest {
  const file = path.join(dir, MANIFEST);
  if (!fs.existsSync(file))
    throw new CliError(
      `${file} does not exist: ${dir} is not a backup directory, or its backup did not finish (the manifest is written last)`,
    );
  let m: Manifest;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest;
  } catch (e) {
    throw new CliError(`${file} is not valid JSON (${(e as Error).message}); the backup is damaged`);
  }
  if (m.format !== BACKUP_FORMAT)
    throw new CliError(`${file} is not a dstore backup manifest (format ${JSON.stringify(m.format)})`);
  if (m.formatVersion !== BACKUP_FORMAT_VERSION)
    throw new CliError(
      `${file} is backup format version ${m.formatVersion}; this dstore reads version ${BACKUP_FORMAT_VERSION}. Use the dstore version that wrote it (${m.dstoreVersion})`,
    );
  if (!Array.isArray(m.tables)) throw new CliError(`${file} lists no tables; the backup is damaged`);
  return m;
}

/** What {@link verifyTable} found wrong with a table's file, or undefined when it is whole. */
export async function verifyTable(dir: string, t: ManifestTable): Promise<string | undefined> {
  const file = path.join(dir, t.file);
  if (!fs.existsSync(file)) return `${t.file} is missing`;
  const { sha256, bytes } = await fileDigest(file);
  if (bytes !== t.bytes) return `${t.file} is ${bytes} bytes, the manifest says ${t.bytes}`;
  if (sha256 !== t.sha256) return `${t.file} does not match its checksum (sha256 ${sha256}, manifest ${t.sha256})`;
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const check = db.pragma('integrity_check', { simple: true });
    if (check !== 'ok') return `${t.file} fails SQLite's integrity check: ${String(check)}`;
    const n = (db.prepare('SELECT count(*) AS n FROM rows').get() as { n: number }).n;
    if (n !== t.rows) return `${t.file} holds ${n} rows, the manifest says ${t.rows}`;
  } catch (e) {
    return `${t.file} cannot be read as a backup table (${(e as Error).message})`;
  } finally {
    db?.close();
  }
  return undefined;
}

/** The rows of a table's file (JSON text), in `_id` order, in batches. */
export function* tableRows(dir: string, t: ManifestTable, batch = 5000): Generator<string[]> {
  const db = new Database(path.join(dir, t.file), { readonly: true, fileMustExist: true });
  try {
    let lines: string[] = [];
    for (const r of db.prepare('SELECT doc FROM rows ORDER BY _id').pluck().iterate() as IterableIterator<string>) {
      lines.push(r);
      if (lines.length >= batch) {
        yield lines;
        lines = [];
      }
    }
    if (lines.length > 0) yield lines;
  } finally {
    db.close();
  }
}
