import type { Logger } from '../common/logger';
import { ShardReader } from './shard-store';

/** One backup's view of the shard: a read transaction opened when its BACKUP entry was applied. */
interface Snapshot {
  reader: ShardReader;
  idleMs: number;
  lastUsed: number;
  /** The FETCH reading it now: one at a time, since every read shares the transaction. */
  busy: Promise<void>;
}

/**
 * The read snapshots backups read from (coordinator/backup.ts). A snapshot is a read-only
 * connection holding one read transaction: in WAL mode SQLite shows it the shard exactly as
 * it was when the transaction began, whatever is written after, and copies nothing. It is
 * begun while the ops consumer applies the backup's BACKUP entry (entries are applied one at
 * a time, in stream order), so it holds every entry before the cut and none after. A held
 * snapshot keeps SQLite from checkpointing the WAL past it, so it is let go at BACKUP_END, when
 * not read for its `idleMs`, or when the worker stops; a restart loses it (the backup then
 * reads another replica, or fails saying so).
 */
export class BackupSnapshots {
  private readonly held = new Map<string, Snapshot>();
  private readonly sweep: NodeJS.Timeout;

  constructor(
    private readonly file: string,
    private readonly log: Logger,
  ) {
    this.sweep = setInterval(() => this.dropIdle(), 1000);
    this.sweep.unref();
  }

  /** Begins the snapshot of `backup` now (again, should its BACKUP entry be delivered again). */
  take(backup: string, idleMs: number): void {
    this.end(backup);
    const reader = new ShardReader(this.file);
    reader.db.exec('BEGIN');
    // A deferred transaction takes its snapshot at its first read.
    reader.db.prepare('SELECT count(*) FROM _state').get();
    this.held.set(backup, { reader, idleMs, lastUsed: Date.now(), busy: Promise.resolve() });
    this.log.info({ backup }, 'backup snapshot taken');
  }

  /** Lets the snapshot of `backup` go (nothing when there is none). */
  end(backup: string): void {
    const s = this.held.get(backup);
    if (!s) return;
    this.held.delete(backup);
    // A read in progress finishes first; the connection closes after it.
    void s.busy.finally(() => s.reader.close());
    this.log.info({ backup }, 'backup snapshot let go');
  }

  /**
   * Runs `fn` on the snapshot of `backup`, after any read of it in progress; resolves
   * undefined when this worker holds no such snapshot.
   */
  async use<T>(backup: string, fn: (reader: ShardReader) => Promise<T>): Promise<{ value: T } | undefined> {
    const s = this.held.get(backup);
    if (!s) return undefined;
    const before = s.busy;
    let done: () => void = () => undefined;
    s.busy = new Promise<void>((r) => (done = r));
    try {
      await before;
      if (!s.reader.db.open) return undefined;
      s.lastUsed = Date.now();
      return { value: await fn(s.reader) };
    } finally {
      s.lastUsed = Date.now();
      done();
    }
  }

  /** Backups this worker holds a snapshot of (reported in its heartbeat). */
  ids(): string[] {
    return [...this.held.keys()];
  }

  /** Lets every snapshot go (the worker stops). */
  close(): void {
    clearInterval(this.sweep);
    for (const id of [...this.held.keys()]) this.end(id);
  }

  private dropIdle(): void {
    const now = Date.now();
    for (const [id, s] of this.held)
      if (now - s.lastUsed > s.idleMs) {
        this.log.warn({ backup: id, idleMs: s.idleMs }, 'backup snapshot not read for its idle time; letting it go');
        this.end(id);
      }
  }
}
