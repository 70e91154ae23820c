import { EventEmitter } from 'node:events';
import { MessageError, RejectedError, type RefusalCode } from '../common/errors';
import { FilterError } from '../common/filter';
import { OPS_GROUP, type Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import {
  build,
  errorText,
  decodeOps,
  fieldsFromArray,
  OpAckMessage,
  PostAckMessage,
  type Fields,
  type OpsMessage,
} from '../common/messages';
import { isCluster, type DstoreRedis } from '../common/redis';
import { compareStreamIds } from '../common/stream-ids';
import type { ApplyResult, ShardStore } from './shard-store';
import type { BackupSnapshots } from './backup-snapshots';
import type { StorageState } from '../common/worker-status';

type StreamReply = [key: string, entries: [id: string, fields: string[] | null][]][] | null;

/** What kind of storage failure an SQLite error is, or undefined for any other error. */
export function storageProblem(e: unknown): Exclude<StorageState, 'ok'> | undefined {
  const code = String((e as { code?: unknown }).code ?? '');
  if (code === 'SQLITE_FULL') return 'full';
  if (code.startsWith('SQLITE_READONLY')) return 'read-only';
  if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_CANTOPEN') return 'io-error';
  return undefined;
}

/** Longest wait between two tries of an entry the shard cannot store yet. */
const STORAGE_RETRY_MAX_MS = 2000;

/** Options of {@link OpsConsumer}. */
/** The build lease: renewed while a build runs, so only a dead holder's lapses. */
const BUILD_LEASE_MS = 15_000;

export interface OpsConsumerOptions {
  workerId: string;
  keys: Keys;
  /** Entries per XREADGROUP. */
  batch: number;
  /** Tries before an entry that fails for a transient reason is dead-lettered. */
  applyAttempts: number;
  /** How long one XREADGROUP blocks; bounds how fast stop() is noticed. @defaultValue 1000 */
  blockMs?: number;
  /** Where BACKUP entries begin their snapshots (absent: a BACKUP entry keeps none). */
  snapshots?: Pick<BackupSnapshots, 'take' | 'end'>;
}

/**
 * Consumes a worker's ops stream through its consumer group, strictly in order:
 * decode → apply in one SQLite transaction → reply on the stream named in the
 * message → XACK. Delivery is at least once; applying is idempotent by chunk id /
 * op id, so a redelivered entry replies again but changes nothing.
 *
 * On start it first re-reads its own pending entries (id 0), then every entry not yet
 * delivered; only when both are exhausted does it emit `ready` (reads may then be
 * answered). An entry that fails to decode or is refused goes to the dead-letter stream
 * with its reason, is acked, and consumption goes on.
 *
 * An entry the shard cannot store (disk full, read-only, I/O errors) is never skipped: the
 * consumer reports the condition ({@link storage}, in the heartbeat; coordinators then
 * neither place chunks on it nor read from it) and tries the same entry again until it
 * succeeds, so nothing is lost and order is kept.
 *
 * Events: `ready`, `applied` (entry id), `storage` (state changed); `error` is never
 * emitted (errors are logged and retried).
 */
export class OpsConsumer extends EventEmitter {
  private stopping = false;
  private loopDone?: Promise<void>;
  private readonly stream: string;
  /** Highest entry id this process has finished with (applied, refused or dead-lettered). */
  appliedId: string;
  private sinceTrim = 0;
  /** Indexes wait for the build lease (logged once per wait). */
  private buildWaiting = false;
  ready = false;
  /** Running totals since this process started, reported in the heartbeat (see worker/membership.ts). */
  readonly counters = { entries: 0, chunks: 0, rows: 0, deadLettered: 0 };
  /** Whether the shard can store, and the last storage error while it cannot. */
  storage: { state: StorageState; error?: string; since?: number } = { state: 'ok' };

  constructor(
    private readonly read: DstoreRedis,
    private readonly cmd: DstoreRedis,
    private readonly store: ShardStore,
    private readonly opts: OpsConsumerOptions,
    private readonly log: Logger,
  ) {
    super();
    this.stream = opts.keys.workerOps(opts.workerId);
    this.appliedId = store.appliedId();
  }

  /** Creates the consumer group if needed and starts consuming. */
  async start(): Promise<void> {
    await this.ensureGroup();
    this.loopDone = this.loop();
  }

  /**
   * Finishes the entry in hand, then stops. The blocking read is cut off at once (entries
   * it may have taken stay pending and are read again, id 0, at the next start).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.read.disconnect();
    await this.loopDone;
  }

  private async ensureGroup(): Promise<void> {
    try {
      await this.cmd.xgroup('CREATE', this.stream, OPS_GROUP, '0', 'MKSTREAM');
    } catch (e) {
      if (!String((e as Error).message).includes('BUSYGROUP')) throw e;
    }
  }

  private async readBatch(id: string, block: boolean): Promise<[string, string[] | null][]> {
    const args: (string | number)[] = ['GROUP', OPS_GROUP, this.opts.workerId, 'COUNT', this.opts.batch];
    if (block) args.push('BLOCK', this.opts.blockMs ?? 1000);
    args.push('STREAMS', this.stream, id);
    const reply = (await (this.read.xreadgroup as (...a: (string | number)[]) => Promise<unknown>)(
      ...args,
    )) as StreamReply;
    return reply?.[0]?.[1] ?? [];
  }

  /**
   * Once the backlog is drained: every entry ever delivered to the group was handled, so the
   * applied id is at least the group's last delivered id. The id recorded in SQLite lags it
   * when the last entries wrote nothing there (BACKUP, BACKUP_END, a dead-lettered entry):
   * without this a restarted worker whose stream ends with such an entry would wait for it
   * at every read fence until the next write came.
   */
  private async catchUpToDelivered(): Promise<void> {
    let groups: unknown[][];
    try {
      groups = (await this.cmd.xinfo('GROUPS', this.stream)) as unknown[][];
    } catch (e) {
      // A Redis user made before this rule (docs/security.md): reads wait for the next write.
      this.log.warn({ err: e }, "cannot read the ops group's last delivered id (XINFO GROUPS); grant +xinfo|groups");
      return;
    }
    for (const g of groups) {
      const f = new Map<string, unknown>();
      for (let i = 0; i + 1 < g.length; i += 2) f.set(String(g[i]), g[i + 1]);
      if (f.get('name') !== OPS_GROUP || Number(f.get('pending')) !== 0) continue;
      const last = String(f.get('last-delivered-id'));
      if (compareStreamIds(last, this.appliedId) > 0) {
        this.appliedId = last;
        this.emit('applied', last);
      }
    }
  }

  /** Whether an entry below `id` (any entry, without `id`) is pending for this consumer. */
  private async pendingBefore(id: string | undefined): Promise<boolean> {
    const end = id === undefined ? '+' : `(${id}`;
    const rows = (await this.cmd.xpending(this.stream, OPS_GROUP, '-', end, 1, this.opts.workerId)) as unknown[];
    return rows.length > 0;
  }

  private async loop(): Promise<void> {
    // Phase 1: our own pending entries (delivered before a crash, never acked).
    // Phase 2: entries never delivered, without blocking, until none are left: then ready.
    // Phase 3: block for new entries.
    let phase: 1 | 2 | 3 = 1;
    // Builds a crash cut short (recorded `building`) are run again first, when it is our turn.
    await this.buildIndexes().catch((e) => this.log.error({ err: e }, 'index build failed'));
    while (!this.stopping) {
      try {
        const entries = await this.readBatch(phase === 1 ? '0' : '>', phase === 3);
        // A reply can be lost with its connection (Redis restart, network): the entries it
        // carried are then pending for us but were never seen, and ioredis resends the read,
        // which continues after them. Before new entries, or when idle, make sure no entry
        // before them is pending; if one is, read the pending list again (in order).
        if (phase !== 1 && (await this.pendingBefore(entries[0]?.[0]))) {
          this.log.warn('entries delivered to this worker were never seen (a lost reply); reading them again');
          phase = 1;
          continue;
        }
        if (entries.length === 0) {
          // Idle: a build that waited for its turn may run now.
          if (this.store.hasPendingBuilds()) await this.buildIndexes();
          if (this.sinceTrim > 0) this.trim();
          if (phase === 1) phase = 2;
          else if (phase === 2) {
            await this.catchUpToDelivered();
            phase = 3;
            this.ready = true;
            this.log.info({ appliedId: this.appliedId }, 'ops backlog applied; ready for reads');
            this.emit('ready');
          }
          continue;
        }
        for (const [id, raw] of entries) {
          if (this.stopping && phase === 3) break; // unacked entries stay pending for the next start
          await this.handle(id, raw);
        }
      } catch (e) {
        if (this.stopping) break;
        const msg = String((e as Error).message);
        if (msg.includes('NOGROUP')) {
          this.log.warn('consumer group missing (stream deleted?); recreating it');
          await this.ensureGroup().catch(() => undefined);
          continue;
        }
        this.log.error({ err: e }, 'reading the ops stream failed; retrying');
        await sleep(500);
      }
    }
  }

  /** Handles one entry; never throws for a bad entry, only for Redis failures. */
  private async handle(id: string, raw: string[] | null): Promise<void> {
    if (raw === null) {
      // Deleted from the stream while pending (XDEL / trim): nothing to apply.
      await this.cmd.xack(this.stream, OPS_GROUP, id);
      this.advance(id);
      return;
    }
    const fields = fieldsFromArray(raw);
    let msg: OpsMessage;
    try {
      msg = decodeOps(fields);
    } catch (e) {
      await this.deadLetter(id, fields, (e as Error).message);
      return;
    }
    let result: ApplyResult | undefined;
    let refusal: Refusal | undefined;
    for (let attempt = 1, stalled = 0; ; attempt++) {
      try {
        result = this.apply(msg, id);
        this.setStorage('ok');
        break;
      } catch (e) {
        if (e instanceof RejectedError || e instanceof FilterError || e instanceof MessageError) {
          refusal = refusalOf(e);
          break;
        }
        const problem = storageProblem(e);
        if (problem) {
          // Not counted as an attempt: waiting for space is not failing; the entry stays first.
          this.setStorage(problem, (e as Error).message);
          if (this.stopping) return; // left pending: read again at the next start
          await sleep(Math.min(100 * 2 ** Math.min(stalled++, 5), STORAGE_RETRY_MAX_MS));
          attempt--;
          continue;
        }
        if (attempt >= this.opts.applyAttempts) {
          refusal = { ...refusalOf(e), message: `failed after ${attempt} attempts: ${(e as Error).message}` };
          break;
        }
        this.log.warn({ err: e, entry: id, attempt }, 'applying an entry failed; retrying');
        await sleep(Math.min(100 * 2 ** attempt, 5000));
      }
    }
    if (refusal !== undefined) {
      await this.reply(msg, { count: 0, duplicate: false }, refusal);
      await this.deadLetter(id, fields, refusal.message);
      return;
    }
    if (isCluster(this.cmd)) {
      // The reply stream and ours live on different nodes: no pipeline can span them, and
      // the ack must still go out before the XACK.
      await this.reply(msg, result!);
      await this.cmd.xack(this.stream, OPS_GROUP, id);
    } else {
      // The ack to the coordinator and the XACK travel in one round trip.
      const p = this.cmd.pipeline();
      void this.reply(msg, result!, undefined, p); // queues synchronously when given a pipeline
      p.xack(this.stream, OPS_GROUP, id);
      const res = await p.exec();
      const err = res?.find(([e]) => e)?.[0];
      if (err) throw err;
    }
    this.advance(id);
    // A new index is built before the next entry when it is this worker's turn: reads go on
    // meanwhile (the build runs off the event loop), writes wait for it, in order.
    if (this.store.hasPendingBuilds()) await this.buildIndexes();
  }

  /**
   * Builds the indexes recorded `building`, holding the cluster's build lease
   * (`{<p>}:index-build`): one worker builds at a time, since a build holds the shard's write
   * lock, and were every copy of a chunk building at once, no replica could ack a write. Without
   * the lease it returns and the consumer goes on applying entries (the index is not used
   * until built); it tries again after the next entry, or within a second when idle. A holder
   * that dies frees the lease when it expires.
   */
  private async buildIndexes(): Promise<void> {
    if (!this.store.hasPendingBuilds()) return;
    const lease = this.opts.keys.indexBuildLease;
    const me = this.opts.workerId;
    if ((await this.cmd.set(lease, me, 'PX', BUILD_LEASE_MS, 'NX')) !== 'OK') {
      if ((await this.cmd.get(lease)) !== me) {
        if (!this.buildWaiting) this.log.info('secondary indexes to build; waiting for the build lease');
        this.buildWaiting = true;
        return;
      }
      await this.cmd.pexpire(lease, BUILD_LEASE_MS);
    }
    this.buildWaiting = false;
    const renew = setInterval(() => {
      this.cmd.renewLock(lease, me, BUILD_LEASE_MS).catch(() => undefined);
    }, BUILD_LEASE_MS / 3);
    const t0 = Date.now();
    try {
      await this.store.buildPending();
      this.log.info({ ms: Date.now() - t0 }, 'secondary indexes built');
    } finally {
      clearInterval(renew);
      await this.cmd.releaseLock(lease, me).catch(() => undefined);
    }
  }

  private setStorage(state: StorageState, error?: string): void {
    if (state === this.storage.state && (state === 'ok' || error === this.storage.error)) return;
    const was = this.storage.state;
    this.storage = state === 'ok' ? { state } : { state, error, since: this.storage.since ?? Date.now() };
    if (was !== state) {
      if (state === 'ok') this.log.info({ was }, 'the shard can store again; applying the ops stream');
      else
        this.log.error(
          { storage: state, error },
          'the shard cannot store; holding the ops stream until it can (no new chunks, no reads here meanwhile)',
        );
      this.emit('storage', this.storage);
    }
  }

  private apply(msg: OpsMessage, id: string): ApplyResult {
    switch (msg.type) {
      case 'POST': {
        const r = this.store.insertChunk(msg, id);
        if (!r.duplicate) {
          this.counters.chunks++;
          this.counters.rows += r.count;
        }
        this.log.info({ table: msg.table, chunk: msg.chunk, count: r.count, duplicate: r.duplicate }, 'stored chunk');
        return r;
      }
      case 'COMMIT':
        return this.store.commitPost(msg.op, msg.post, id);
      case 'ABORT':
        return this.store.abortPost(msg.op, msg.post, id);
      case 'DROP_CHUNKS':
        return this.store.dropChunks(msg.op, msg.chunks, id);
      case 'SET_REPLICAS':
        return this.store.setReplicas(msg.op, msg.chunk, msg.replicas, id);
      case 'SETUP_TABLE':
        return this.store.setupTable(msg, id);
      case 'DROP_TABLE':
        return this.store.dropTable(msg.op, msg.table, id);
      case 'UPDATE':
        return this.store.update(msg, id);
      case 'DELETE':
        return this.store.delete(msg, id);
      case 'UPSERT':
        return this.store.upsert(msg, id);
      case 'BACKUP':
        // Every entry before this one is applied and committed: the snapshot is the cut.
        this.opts.snapshots?.take(msg.backup, msg.idleMs);
        return { count: 0, duplicate: false };
      case 'BACKUP_END':
        this.opts.snapshots?.end(msg.backup);
        return { count: 0, duplicate: false };
    }
  }

  /**
   * Writes the ack to the stream the message names (queued on `pipeline` when given), with
   * the refusal's message, and for a POST its code and row; only coordinator reply streams
   * are accepted.
   */
  private async reply(
    msg: OpsMessage,
    r: ApplyResult,
    refusal?: Refusal,
    pipeline?: ReturnType<DstoreRedis['pipeline']>,
  ): Promise<void> {
    if (!this.opts.keys.isCoordReplies(msg.replyTo)) {
      this.log.warn({ replyTo: msg.replyTo }, 'not replying: replyTo is not a coordinator reply stream of this prefix');
      return;
    }
    const status = refusal === undefined ? 'ok' : 'error';
    const ack =
      msg.type === 'POST'
        ? build(PostAckMessage, {
            chunk: msg.chunk,
            post: msg.post,
            worker: this.opts.workerId,
            status,
            rows: r.count,
            duplicate: r.duplicate,
            error: errorText(refusal?.message),
            code: refusal?.code,
            row: refusal?.row,
          })
        : build(OpAckMessage, {
            op: msg.op,
            kind: msg.type,
            worker: this.opts.workerId,
            status,
            count: r.count,
            counts: r.counts,
            error: errorText(refusal?.message),
          });
    if (pipeline) pipeline.xadd(msg.replyTo, '*', ...ack.toArgs());
    else await this.cmd.xadd(msg.replyTo, '*', ...ack.toArgs());
  }

  private async deadLetter(id: string, fields: Fields, reason: string): Promise<void> {
    this.log.warn({ entry: id, reason, type: fields.type }, 'dead-lettered an ops entry');
    this.counters.deadLettered++;
    const original = JSON.stringify(fields);
    await this.cmd.xadd(
      this.opts.keys.dead,
      'MAXLEN',
      '~',
      '100000',
      '*',
      'stream',
      this.stream,
      'id',
      id,
      'worker',
      this.opts.workerId,
      'reason',
      reason,
      // The entry's own type, cut short: a hostile entry's "type" may be megabytes.
      'type',
      String(fields.type ?? '').slice(0, 64),
      'entry',
      original.length > 1_000_000 ? original.slice(0, 1_000_000) + '…' : original,
    );
    await this.cmd.xack(this.stream, OPS_GROUP, id);
    this.advance(id);
  }

  private advance(id: string): void {
    this.counters.entries++;
    if (compareStreamIds(id, this.appliedId) > 0) this.appliedId = id;
    this.emit('applied', id);
    if (++this.sinceTrim >= TRIM_EVERY) this.trim();
  }

  /**
   * Drops the entries before the last applied one: they are in SQLite now, and without
   * this every row would stay in Redis R times forever. Entries are applied in order, so
   * everything below `appliedId` is acked; the newest applied entry stays, which keeps the
   * read fence's "last entry" defined. `~` lets Redis trim whole stream nodes only (cheap).
   */
  private trim(): void {
    this.sinceTrim = 0;
    this.cmd
      .xtrim(this.stream, 'MINID', '~', this.appliedId)
      .catch((e) => this.log.debug({ err: e }, 'trimming the ops stream failed; next time'));
  }

  /** Resolves once every entry up to `id` is handled, or false after `timeoutMs`. */
  async waitApplied(id: string, timeoutMs: number): Promise<boolean> {
    if (compareStreamIds(this.appliedId, id) >= 0) return true;
    return new Promise((resolve) => {
      const onApplied = () => {
        if (compareStreamIds(this.appliedId, id) >= 0) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.off('applied', onApplied);
        resolve(ok);
      };
      this.on('applied', onApplied);
    });
  }
}

/** Applied entries between two trims of the ops stream. */
const TRIM_EVERY = 64;

/** Why an entry was refused, as its ack (and dead letter) says it. */
export interface Refusal {
  message: string;
  code: RefusalCode;
  /** The 1-based row of a POST's chunk at fault, when one row is. */
  row?: number;
}

/**
 * The refusal an error from applying an entry amounts to; the error's class decides the
 * code, so the coordinator never has to read the wording.
 */
export function refusalOf(e: unknown): Refusal {
  if (e instanceof RejectedError) return { message: e.message, code: e.code, row: e.row };
  if (e instanceof FilterError || e instanceof MessageError) return { message: e.message, code: 'bad-input' };
  const message = e instanceof Error ? e.message : String(e);
  return {
    message,
    code: String((e as { code?: unknown } | null)?.code ?? '').startsWith('SQLITE_') ? 'storage' : 'internal',
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
