import { ulid } from 'ulid';
import { build, BackupEndMessage, BackupMessage } from '../common/messages';
import { normalizeQuery } from '../common/query';
import { redisNow } from '../common/redis';
import { placementInOrder, resumePendingCommit } from './commit-send';
import type { CoordinatorContext } from './context';
import { ApiError, unavailable } from './errors';
import type { FetchMerger } from './fetch-merger';
import { xaddEach } from './ops';
import { ORDER_LEASE_MS, takeOrderLock, type ReleaseOrderLock } from './order-lock';
import type { TableDef } from './table-def';

/** One table as a backup's cut holds it. */
export interface BackupTable {
  def: TableDef;
  /** The chunks of the table at the cut → the workers that held them. */
  chunks: Record<string, string[]>;
}

/** What `POST /admin/backups` answers and the backup's record keeps: the cut. */
export interface BackupCut {
  backup: string;
  /** Redis time (ms) of the cut. */
  cutAt: number;
  /** Each worker's BACKUP entry (its ops stream id): the cut on that stream. */
  marks: Record<string, string>;
  tables: BackupTable[];
}

/** What `GET /admin/backups/:id` answers. */
export interface BackupProgress {
  backup: string;
  cutAt: number;
  tables: { name: string; chunks: number; rowsRead: number; done: boolean }[];
}

/** How long a backup's snapshots and record live without being read. */
export const BACKUP_IDLE_MS = 10 * 60_000;

/**
 * Backups: a consistent cut of every table, read while writes go on (docs/consistency.md,
 * "Backups").
 *
 * The cut. Every write that must reach all replicas in one order (COMMIT, UPSERT, UPDATE,
 * DELETE, a schema change) is XADDed under its table's write-order lock. {@link start} takes
 * every table's lock (in name order, so two backups cannot deadlock), finishes the commits
 * that were decided but may not be on every stream yet (the lock's pending record, and every
 * POST marked `committing`), reads the placement, XADDs a BACKUP entry to every worker's
 * stream, and lets the locks go: milliseconds. On each stream every write acknowledged
 * before the backup started is before that entry, and each write is before it on every
 * stream or on none. A worker applying the entry keeps a read snapshot of its shard as of it
 * (worker/backup-snapshots.ts); the backup's reads ({@link rows}) ask one holder per chunk
 * of the cut to answer from that snapshot, with the usual accounting (each chunk exactly
 * once, another replica when one fails), so the backup holds each row once.
 */
export class Backups {
  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly fetch: FetchMerger,
    private readonly idleMs = BACKUP_IDLE_MS,
  ) {}

  /** Takes the cut; answers what it holds. 503 when a table's write-order lock could not be had. */
  async start(): Promise<BackupCut> {
    const { cmd, keys } = this.ctx;
    const backup = ulid();
    const names = Object.keys(await cmd.hgetall(keys.tables)).sort();
    const locks: ReleaseOrderLock[] = [];
    const renew = setInterval(() => locks.forEach((l) => void l.renew().catch(() => false)), ORDER_LEASE_MS / 3);
    let cut: BackupCut;
    try {
      for (const t of names) {
        const lock = await takeOrderLock(cmd, keys, t);
        if (!lock)
          throw unavailable(
            `the write-order lock of table ${t} was held by another coordinator for over ${2 * ORDER_LEASE_MS} ms; no backup was started, try again`,
          );
        locks.push(lock);
        if (lock.pending) await resumePendingCommit(this.ctx, t, lock.pending);
      }
      cut = await this.cutUnderLocks(backup, names);
    } finally {
      clearInterval(renew);
      await Promise.all(locks.map((l) => l().catch(() => false)));
    }
    await cmd
      .multi()
      .hset(keys.backup(backup), 'cut', JSON.stringify(cut))
      .pexpire(keys.backup(backup), this.idleMs)
      .exec();
    this.ctx.log.info(
      { backup, tables: cut.tables.length, workers: Object.keys(cut.marks).length },
      'backup started: cut taken',
    );
    return cut;
  }

  private async cutUnderLocks(backup: string, names: string[]): Promise<BackupCut> {
    const { cmd, keys } = this.ctx;
    const { defs, placements } = await placementInOrder(this.ctx, names);
    const tables: BackupTable[] = [];
    const holders = new Set<string>();
    for (const [name, p] of placements) {
      for (const replicas of p.chunks.values()) for (const w of replicas) holders.add(w);
      tables.push({ def: defs.get(name)!, chunks: Object.fromEntries(p.chunks) as Record<string, string[]> });
    }
    const workers = [...new Set([...(await this.ctx.workers.known()), ...holders])].sort();
    const msg = build(BackupMessage, { op: ulid(), backup, idleMs: this.idleMs, replyTo: this.ctx.replyTo }).toArgs();
    const marks: Record<string, string> = {};
    await Promise.all(
      workers.map(async (w) => {
        marks[w] = (await cmd.xadd(keys.workerOps(w), '*', ...msg))!;
      }),
    );
    return { backup, cutAt: await redisNow(cmd), marks, tables };
  }

  /** The backup's cut, or a 404 when there is no such backup (ended, or expired unused). */
  async cut(backup: string): Promise<BackupCut> {
    const raw = await this.ctx.cmd.hget(this.ctx.keys.backup(backup), 'cut');
    if (!raw)
      throw new ApiError(
        404,
        'not_found',
        `no backup ${backup} in progress (it ended, or was not read for ${this.idleMs / 1000} s); start another`,
        { backup },
      );
    return JSON.parse(raw) as BackupCut;
  }

  /** Where a backup stands: the rows read of each table so far. */
  async progress(backup: string): Promise<BackupProgress> {
    const cut = await this.cut(backup);
    const h = await this.ctx.cmd.hgetall(this.ctx.keys.backup(backup));
    return {
      backup,
      cutAt: cut.cutAt,
      tables: cut.tables.map((t) => ({
        name: t.def.name,
        chunks: Object.keys(t.chunks).length,
        rowsRead: Number(h[`done:${t.def.name}`] ?? h[`rows:${t.def.name}`] ?? 0),
        done: h[`done:${t.def.name}`] !== undefined,
      })),
    };
  }

  /**
   * The rows of one table as of the cut, as stored (encrypted columns stay encrypted), in
   * pieces of NDJSON text. Throws (503) when a chunk has no holder that can answer from its
   * snapshot; the read is exact or fails.
   */
  async *rows(backup: string, table: string): AsyncGenerator<{ rows: string; count: number }> {
    const cut = await this.cut(backup);
    const t = cut.tables.find((x) => x.def.name === table);
    if (!t) throw new ApiError(404, 'not_found', `backup ${backup} holds no table ${table}`, { backup, table });
    const key = this.ctx.keys.backup(backup);
    const placement = {
      version: `backup:${backup}`,
      chunks: new Map(Object.entries(t.chunks)),
    };
    let total = 0;
    let reported = 0;
    for await (const piece of this.fetch.read(table, normalizeQuery({}), { snapshot: { backup, placement } })) {
      if ('partial' in piece || 'explain' in piece || 'next' in piece) continue;
      total += piece.count;
      if (total - reported >= 10_000) {
        await this.ctx.cmd.multi().hset(key, `rows:${table}`, total).pexpire(key, this.idleMs).exec();
        reported = total;
      }
      yield piece;
    }
    await this.ctx.cmd.multi().hset(key, `done:${table}`, total).pexpire(key, this.idleMs).exec();
  }

  /** Ends a backup: every worker lets its snapshot go. Nothing happens for one already ended. */
  async end(backup: string): Promise<void> {
    const raw = await this.ctx.cmd.hget(this.ctx.keys.backup(backup), 'cut');
    const workers = raw ? Object.keys((JSON.parse(raw) as BackupCut).marks) : await this.ctx.workers.known();
    const msg = build(BackupEndMessage, { op: ulid(), backup, replyTo: this.ctx.replyTo }).toArgs();
    await xaddEach(this.ctx, workers, msg);
    await this.ctx.cmd.del(this.ctx.keys.backup(backup));
    this.ctx.log.info({ backup }, 'backup ended');
  }
}
