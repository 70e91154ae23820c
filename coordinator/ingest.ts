import { monotonicFactory, ulid } from 'ulid';
import type { OnConflict } from '../common/api';
import type { CoordinatorOptions } from '../common/config';
import type { Logger } from '../common/logger';
import { buildRows, build, AbortMessage, PostMessage, type PostAckMessage } from '../common/messages';
import { refusalError } from './refusals';
import type { TableDef } from './table-def';
import { ApiError, badRequest, conflict, unavailable } from './errors';
import type { ParsedRecord } from './record-parsers';
import type { CoordinatorContext } from './context';
import { checkRecordBytes, checkRecordShape, limitExceeded, type Limits } from './limits';
import type { TableEncryption } from './encryption';
import { DecryptError, type FieldCipher } from '../common/field-crypto';
import { checkRow } from './schema';
import { sameRowRules } from './schema-change';
import { placeChunk } from './token-ring';
import { generatedId, type IdIndex } from './id-index';
import { xaddEach } from './ops';
import { inWriteOrder } from './order-lock';
import {
  placementInOrder,
  sendCommitOps,
  stagedUpserts,
  unmarkUpserts,
  type CommitContext,
  type RowReader,
} from './commit-send';
import { bumpPlacement } from './placement';
import { stageChanges } from './changes';
import { mergedRow, stagedEvent, storedRowId } from '../common/changes';
import { normalizeQuery } from '../common/query';
import { SCRIPT_CODES, ScriptError, scriptResult } from '../common/script-codes';

/** What a successful POST reports. */
export interface IngestResult {
  post: string;
  /** Rows stored anew. */
  inserted: number;
  /** Rows whose `_id` was stored: replaced (`replace`) or changed (`merge`); 0 for `error`. */
  updated: number;
  chunks: number;
  /** Chunks acked by fewer than R workers in time (recorded for repair). */
  underReplicated: number;
}

/** A chunk sent and waiting for acks. */
interface InFlight {
  id: string;
  replicas: string[];
  rows: number;
  /** The request's row number of the chunk's first record, to name rows a worker refuses. */
  firstRow?: number;
  acked: Set<string>;
  sentAt: number;
  /** Time it reached minReplicas acks. */
  minAt?: number;
}

const MAX_ID_LENGTH = 256;
/** How every stored row begins: `_id` first (withIdFirst, JSON.stringify of `{_id, …}`). */
const ID_HEAD = '{"_id":"';
// Once every chunk has its minReplicas acks, how long a POST still waits for the rest.
const REPLICA_GRACE_MS = 2000;

/**
 * The write path: records stream in, are checked (schema, `_id`), cut into chunks
 * (`chunkRows` / `chunkBytes`), placed by the token ring and XADDed to each replica's
 * ops stream. At most `ingestWindow` chunks wait for acks at once, so memory does not
 * grow with the input. The POST commits (COMMIT to every worker that got a chunk) only
 * when every chunk has `minReplicas` acks; any failure aborts it (ABORT removes every
 * chunk it placed), so a request is stored whole or not at all.
 */
export class Ingest {
  private readonly newId = monotonicFactory();

  private readonly log: Logger;

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly opts: Pick<
      CoordinatorOptions,
      'replicas' | 'minReplicas' | 'chunkRows' | 'chunkBytes' | 'ingestWindow' | 'ackTimeoutMs'
    > &
      Pick<Limits, 'maxRowsPerRequest' | 'maxRecordBytes' | 'maxFields' | 'maxDepth'>,
    private readonly idIndex: IdIndex,
    private readonly encryption?: TableEncryption,
    /** Reads (FetchMerger.read): the stored rows an upsert merge of a table with changes on rewrites. */
    private readonly read?: RowReader,
  ) {
    this.log = ctx.log.child({ component: 'ingest' });
  }

  /**
   * Stores the records of one request in `table`; throws an {@link ApiError} when nothing was
   * stored. `ciphertextOf` (a restore): the records' encrypted columns hold the ciphertext a
   * backup of table `ciphertextOf` kept; each is decrypted with this coordinator's key (a
   * value that does not decrypt is a 400 naming its row and field) and encrypted again for
   * `table`.
   */
  async post(
    table: TableDef,
    records: AsyncIterable<ParsedRecord>,
    onConflict: OnConflict = 'error',
    ciphertextOf?: string,
  ): Promise<IngestResult> {
    // Refuses (no key, wrong key) before anything is sent.
    const cipher = this.encryption?.cipherFor(table, 'write');
    if (cipher && ciphertextOf !== undefined) records = decrypted(records, table, ciphertextOf, cipher);
    const encrypt = cipher
      ? (row: Record<string, unknown>) => this.encryption!.encryptRow(table, cipher, row)
      : undefined;
    const post = this.newId();
    const run = new PostRun(this, table, post, onConflict, encrypt);
    try {
      return await run.execute(records);
    } catch (e) {
      await run.settle();
      await run
        .abort()
        .catch((err) => this.log.error({ err, post }, 'aborting a failed POST failed; the clean-up job will retry'));
      throw e;
    } finally {
      run.close();
    }
  }

  /** @internal state shared with PostRun */
  get deps() {
    return {
      ...this.ctx,
      opts: this.opts,
      log: this.log,
      newId: this.newId,
      idIndex: this.idIndex,
      read: this.read,
    };
  }
}

/** One POST in progress. */
class PostRun {
  private readonly d;
  private readonly inflight = new Map<string, InFlight>();
  private readonly placed: string[] = [];
  private readonly touched = new Set<string>();
  private readonly ids = new Set<string>();
  private failure?: ApiError;
  /**
   * Chunk placements under way, off the loop that parses records: each waits on Redis
   * (token, placement, id index, XADDs) while the next chunks' rows are parsed and placed.
   * `queued` counts them, inside the window.
   */
  private readonly sending = new Set<Promise<void>>();
  private queued = 0;
  /** The POST's open record, created before its first chunk is registered. */
  private opened?: Promise<number>;
  private stopping = false;
  private wake?: () => void;
  private readonly unlisten: () => void;
  private readonly timer: NodeJS.Timeout;
  private underReplicated = 0;
  /** Rows whose `_id` was stored (upsert), sent with the COMMIT. */
  private updated = 0;

  constructor(
    ingest: Ingest,
    private readonly table: TableDef,
    private readonly post: string,
    private readonly onConflict: OnConflict,
    private readonly encrypt?: (row: Record<string, unknown>) => void,
  ) {
    this.d = ingest.deps;
    this.unlisten = this.d.router.listen('post', post, (m) => this.onAck(m as PostAckMessage));
    this.timer = setInterval(() => this.checkDeadlines(), 100);
  }

  close(): void {
    clearInterval(this.timer);
    this.unlisten();
  }

  async execute(records: AsyncIterable<ParsedRecord>): Promise<IngestResult> {
    const { chunkRows, chunkBytes, ingestWindow, maxRowsPerRequest } = this.d.opts;
    let chunk = this.d.newId();
    let ids: string[] = [];
    let rows: string[] = [];
    // The client's own ids of the chunk: only these go into the id index.
    let clientIds: string[] = [];
    let bytes = 0;
    let inserted = 0;
    let firstRow = 0;
    const cut = () => {
      this.enqueue(chunk, ids, rows, clientIds, firstRow);
      chunk = this.d.newId();
      ids = [];
      rows = [];
      clientIds = [];
      bytes = 0;
    };
    for await (const rec of records) {
      this.throwIfFailed();
      if (inserted >= maxRowsPerRequest) {
        throw limitExceeded(
          413,
          'DSTORE_MAX_ROWS_PER_REQUEST',
          `row ${rec.row}: the request has more than DSTORE_MAX_ROWS_PER_REQUEST (${maxRowsPerRequest}) records; split it`,
          { row: rec.row },
        );
      }
      const prepared = this.prepare(rec, () => generatedId(chunk, rows.length));
      let { id, line } = prepared;
      const { generated } = prepared;
      // A UTF-16 unit is at most 3 UTF-8 bytes: count bytes only when the limit could be near.
      if (line.length * 3 > this.d.opts.maxRecordBytes) checkRecordBytes(Buffer.byteLength(line), this.d.opts, rec.row);
      if (bytes + line.length > chunkBytes && rows.length > 0) {
        cut();
        // A generated id names its chunk and place: the row moved to the next chunk, so its
        // id moves too (same length, right after the opening `{"_id":"`).
        if (generated) {
          id = generatedId(chunk, 0);
          line = ID_HEAD + id + line.slice(ID_HEAD.length + id.length);
        }
      }
      if (rows.length === 0) firstRow = rec.row;
      ids.push(id);
      rows.push(line);
      if (!generated) clientIds.push(id);
      bytes += line.length + 1;
      inserted++;
      if (rows.length >= chunkRows) cut();
      while (this.waitingForMin() + this.queued >= ingestWindow) {
        this.throwIfFailed();
        await this.nextEvent();
      }
    }
    if (rows.length > 0) this.enqueue(chunk, ids, rows, clientIds, firstRow);
    await Promise.all(this.sending);
    // Every chunk needs minReplicas acks; then the rest get a short grace.
    while (this.waitingForMin() > 0 || this.waitingForAll() > 0) {
      this.throwIfFailed();
      await this.nextEvent();
    }
    this.throwIfFailed();
    // A body without records (e.g. a CSV header alone) stored nothing: nothing to commit.
    if (this.placed.length > 0) await this.commit();
    return {
      post: this.post,
      inserted: inserted - this.updated,
      updated: this.updated,
      chunks: this.placed.length,
      underReplicated: this.underReplicated,
    };
  }

  /** Checks one record and serialises it with `_id` first; `generate` gives the `_id` of a record without one. */
  private prepare(rec: ParsedRecord, generate: () => string): { id: string; line: string; generated: boolean } {
    const v = rec.value;
    if (!v || typeof v !== 'object' || Array.isArray(v)) {
      throw badRequest(
        `row ${rec.row}: a record must be a JSON object, got ${Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v}`,
        { row: rec.row },
      );
    }
    let row = v as Record<string, unknown>;
    checkRecordShape(row, this.d.opts, rec.row);
    // Columns added with a default: a row without one gets it (and is written anew below).
    // Not in a merge, which sets the given fields only: a new row gets them when it is placed.
    let filled = false;
    if (this.onConflict !== 'merge')
      for (const col in this.table.defaults)
        if (!Object.hasOwn(row, col)) {
          row = filled ? row : { ...row };
          row[col] = this.table.defaults[col];
          filled = true;
        }
    if (this.table.schema) checkRow(row, this.table.schema, rec.row);
    let id = row._id;
    const generated = id === undefined;
    if (generated) {
      id = generate();
    } else {
      if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH || /[\u0000-\u001f\u007f]/.test(id)) {
        throw badRequest(
          `row ${rec.row}: field "_id" must be a non-empty string of at most ${MAX_ID_LENGTH} characters without control characters`,
          {
            row: rec.row,
            field: '_id',
          },
        );
      }
      // One hash lookup per row: add, and see whether the set grew.
      const n = this.ids.size;
      if (this.ids.add(id).size === n)
        throw conflict(`row ${rec.row}: duplicate _id ${JSON.stringify(id)} in this request`, {
          row: rec.row,
          field: '_id',
        });
    }
    // The client's own text holds encrypted columns in clear: with encryption the row is always re-serialised.
    const reused =
      rec.text === undefined || this.encrypt || filled
        ? undefined
        : withIdFirst(rec.text, id as string, row._id === undefined);
    if (reused !== undefined) return { id: id as string, line: reused, generated };
    const { _id, ...rest } = row;
    void _id;
    // After the checks, which need the clear values; `rest` is a copy, the input stays as it was.
    this.encrypt?.(rest);
    return { id: id as string, line: JSON.stringify({ _id: id, ...rest }), generated };
  }

  /** Places no more chunks and waits until none is being placed (before an abort, so no chunk is sent after it). */
  async settle(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.sending);
  }

  /** Starts placing one chunk ({@link send}) without waiting for it; a failure fails the POST. */
  private enqueue(chunk: string, ids: string[], rows: string[], clientIds: string[], firstRow: number): void {
    this.queued++;
    const p = (async () => {
      try {
        if (!this.failure && !this.stopping) await this.send(chunk, ids, rows, clientIds, firstRow);
      } catch (e) {
        this.fail(e as ApiError);
      } finally {
        this.queued--;
        this.wake?.();
      }
    })();
    this.sending.add(p);
    void p.finally(() => this.sending.delete(p));
  }

  /** Places one chunk; `firstRow` is the request's row number of its first record. */
  private async send(
    chunk: string,
    ids: string[],
    rows: string[],
    clientIds: string[],
    firstRow: number,
  ): Promise<void> {
    const { cmd, keys, opts, workers } = this.d;
    // Draining workers take no new chunks.
    const live = await workers.writable();
    if (live.length < opts.minReplicas) {
      throw unavailable(
        `${live.length} live worker(s); a write needs at least DSTORE_MIN_REPLICAS=${opts.minReplicas}. Start workers or lower DSTORE_MIN_REPLICAS`,
        {
          live,
        },
      );
    }
    const token = await cmd.incr(keys.token);
    const replicas = placeChunk(live, token, opts.replicas);
    const meta = JSON.stringify({ table: this.table.name, post: this.post, replicas, rows: ids.length });
    this.placed.push(chunk);
    replicas.forEach((w) => this.touched.add(w));
    // Placement is recorded before any stream gets the chunk, so clean-up always knows where a
    // chunk may be. On a cluster the streams live on other nodes than the metadata, hence
    // one command per stream rather than one pipeline.
    // The open record first, once for the whole POST (clean-up looks for it).
    this.opened ??= cmd.hsetnx(
      keys.openPosts,
      this.post,
      JSON.stringify({ coordinator: this.d.coordinatorId, table: this.table.name, at: Date.now() }),
    );
    await this.opened;
    try {
      scriptResult(
        'register-chunk.lua',
        await cmd.registerChunk(
          5 + replicas.length,
          keys.chunks,
          keys.tableChunks(this.table.name),
          keys.openPosts,
          keys.postChunks(this.post),
          keys.postWorkers(this.post),
          ...replicas.map((w) => keys.workerChunks(w)),
          chunk,
          meta,
          this.post,
          ...replicas,
        ),
      );
    } catch (e) {
      if (!(e instanceof ScriptError && e.code === SCRIPT_CODES.POST_NOT_OPEN)) throw e;
      throw unavailable(
        `POST ${this.post} was aborted by the clean-up job while it was being stored (this coordinator looked dead); nothing was stored, retry the request`,
      );
    }
    // After the placement is recorded: an index entry whose chunk has none is stale. Generated
    // ids name their chunk and need no entry.
    const stored = await this.d.idIndex.reserve(
      this.table.name,
      chunk,
      clientIds,
      (id) => firstRow + ids.indexOf(id),
      this.onConflict === 'error' ? undefined : this.post,
    );
    if (stored.size > 0 || (this.onConflict === 'merge' && this.table.defaults))
      [ids, rows] = await this.stageUpserts(stored, ids, rows);
    // A table with changes on: the chunk's rows are its insert events, moved into the change
    // stream with the COMMIT (nothing, if the POST aborts).
    if (this.table.changes)
      await stageChanges(
        cmd,
        keys,
        this.table.name,
        this.post,
        ids.map((id, i) => stagedEvent('insert', id, rows[i])),
      );
    const msg = buildRows(PostMessage, {
      chunk,
      post: this.post,
      table: this.table.name,
      replicas,
      replyTo: this.d.replyTo,
      ids,
      rows,
      ...(this.table.indexes ? { indexes: this.table.indexes } : {}),
    });
    const args = msg.toArgs();
    if (replicas.length < opts.replicas) {
      // Fewer live workers than R: acknowledged with fewer copies, recorded (after the
      // placement, which repair reads) so that repair tops it up once workers can take it.
      this.underReplicated++;
      await cmd.zadd(keys.underReplicated, Date.now(), chunk);
      this.d.log.warn(
        { chunk, replicas, want: opts.replicas },
        'chunk placed on fewer than DSTORE_REPLICAS workers; recorded for repair',
      );
    }
    this.inflight.set(chunk, { id: chunk, replicas, rows: ids.length, firstRow, acked: new Set(), sentAt: Date.now() });
    // Several copies: the large fields are encoded to UTF-8 once, not once per stream write.
    const payload = replicas.length > 1 ? args.map((a) => (a.length > 4096 ? Buffer.from(a) : a)) : args;
    await xaddEach(this.d, replicas, payload);
  }

  /**
   * Takes the rows whose `_id` is stored out of a chunk and records them (with a fixed op id,
   * so a COMMIT sent again by clean-up applies them once) in `post:<id>:upserts`, to be sent
   * as an UPSERT op with the COMMIT. Returns the chunk's ids and rows left to insert; in a
   * merge those get the defaults of added columns, as any new row does.
   */
  private async stageUpserts(
    stored: Map<string, string>,
    ids: string[],
    rows: string[],
  ): Promise<[string[], string[]]> {
    const keep: [string[], string[]] = [[], []];
    const defaults = this.onConflict === 'merge' ? this.table.defaults : undefined;
    const batch = {
      op: ulid(),
      mode: this.onConflict,
      chunks: [] as string[],
      ids: [] as string[],
      rows: [] as string[],
      // A merged row deleted meanwhile is stored again: with the defaults a new row gets.
      ...(defaults ? { defaults } : {}),
    };
    ids.forEach((id, i) => {
      const holder = stored.get(id);
      if (holder !== undefined) {
        batch.chunks.push(holder);
        batch.ids.push(id);
        batch.rows.push(rows[i]);
      } else {
        keep[0].push(id);
        keep[1].push(defaults ? withDefaults(rows[i], defaults) : rows[i]);
      }
    });
    if (batch.ids.length > 0) {
      this.updated += batch.ids.length;
      await this.d.cmd.rpush(this.d.keys.postUpserts(this.post), JSON.stringify(batch));
      // A replaced row is an update whose row is the new one (a merge's are made at the
      // commit, from the rows stored then: stageMerged).
      if (this.table.changes && this.onConflict === 'replace')
        await stageChanges(
          this.d.cmd,
          this.d.keys,
          this.table.name,
          this.post,
          batch.ids.map((id, i) => stagedEvent('update', id, batch.rows[i])),
        );
    }
    return keep;
  }

  private onAck(m: PostAckMessage): void {
    const c = this.inflight.get(m.chunk);
    if (!c || !c.replicas.includes(m.worker)) return;
    if (m.status === 'error') {
      this.fail(refusalError(m, c));
      return;
    }
    c.acked.add(m.worker);
    if (c.minAt === undefined && c.acked.size >= this.d.opts.minReplicas) c.minAt = Date.now();
    if (c.acked.size === c.replicas.length) this.inflight.delete(m.chunk);
    this.wake?.();
  }

  private checkDeadlines(): void {
    const now = Date.now();
    const { ackTimeoutMs, minReplicas } = this.d.opts;
    for (const c of this.inflight.values()) {
      if (c.minAt === undefined) {
        if (now - c.sentAt > ackTimeoutMs) {
          const silent = c.replicas.filter((w) => !c.acked.has(w));
          this.fail(
            unavailable(
              `chunk ${c.id} got ${c.acked.size} of ${minReplicas} required acks within DSTORE_ACK_TIMEOUT_MS=${ackTimeoutMs} (silent: ${silent.join(', ')}); nothing was stored`,
              {
                workers: silent,
              },
            ),
          );
          return;
        }
      } else if (now - c.minAt > Math.min(REPLICA_GRACE_MS, ackTimeoutMs)) {
        this.inflight.delete(c.id);
        this.underReplicated++;
        this.d.cmd.zadd(this.d.keys.underReplicated, now, c.id).catch(() => undefined);
        this.d.log.warn(
          { chunk: c.id, acked: [...c.acked], replicas: c.replicas },
          'chunk under-replicated; recorded for repair',
        );
      }
    }
    this.wake?.();
  }

  private waitingForMin(): number {
    let n = 0;
    for (const c of this.inflight.values()) if (c.minAt === undefined) n++;
    return n;
  }

  private waitingForAll(): number {
    return this.inflight.size;
  }

  private nextEvent(): Promise<void> {
    return new Promise((resolve) => (this.wake = resolve));
  }

  private fail(e: ApiError): void {
    this.failure ??= e;
    this.wake?.();
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private async commit(): Promise<void> {
    const { cmd, keys } = this.d;
    // Under the write-order lock, so a schema change is ordered before this COMMIT or after.
    const begin = async () => {
      const raw = await cmd.hget(keys.tables, this.table.name);
      const now = raw ? (JSON.parse(raw) as TableDef) : undefined;
      if (!now || !sameRowRules(now, this.table))
        throw conflict(
          now
            ? `table ${this.table.name} changed its columns while this request was stored (PATCH /tables/${this.table.name}); nothing was stored, send it again`
            : `table ${this.table.name} was dropped while this request was stored; nothing was stored`,
          { table: this.table.name },
        );
      // Under the lock, before the decision: an abort drops these events with the rest.
      if (now.changes && this.onConflict === 'merge' && this.updated > 0) await this.stageMerged();
      // Marking the record `committing` first decides the race with a clean-up job.
      try {
        scriptResult('begin-commit-1.lua', await cmd.beginCommit(keys.openPosts, this.post));
      } catch (e) {
        if (!(e instanceof ScriptError && e.code === SCRIPT_CODES.POST_NOT_OPEN)) throw e;
        throw unavailable(
          `POST ${this.post} was aborted by the clean-up job before it could commit (this coordinator looked dead); nothing was stored, retry the request`,
        );
      }
    };
    await finishCommit(this.d, this.post, this.table.name, [...this.touched], begin, this.updated > 0);
    this.d.log.info(
      { post: this.post, table: this.table.name, chunks: this.placed.length, underReplicated: this.underReplicated },
      'POST committed',
    );
  }

  /**
   * The update events of a merge's stored rows, each the row as the UPSERT will leave it: the
   * row stored now (read under the table's write-order lock, so at the commit's place in the
   * write order) with the POST's fields set, or, for a row deleted meanwhile, the row the
   * UPSERT stores again (worker/shard-store.ts upsert).
   */
  private async stageMerged(): Promise<void> {
    if (!this.d.read) throw new Error('an upsert merge of a table with changes on needs a reader');
    const batches = await stagedUpserts(this.d, this.post);
    const ids = batches.flatMap((b) => b.ids);
    const stored = new Map<string, string>();
    const placement = (await placementInOrder(this.d, [this.table.name])).placements.get(this.table.name);
    for (let i = 0; i < ids.length; i += 5000) {
      const q = normalizeQuery({ where: { _id: { $in: ids.slice(i, i + 5000) } } });
      for await (const piece of this.d.read(this.table.name, q, { placement })) {
        if (!('rows' in piece)) continue;
        for (const line of piece.rows.split('\n')) if (line) stored.set(storedRowId(line), line);
      }
    }
    const events: string[] = [];
    for (const b of batches)
      b.ids.forEach((id, i) => {
        const now = stored.get(id);
        const after = now
          ? mergedRow(now, b.rows[i], id)
          : b.defaults
            ? mergedRow(JSON.stringify(b.defaults), b.rows[i], id)
            : b.rows[i];
        events.push(stagedEvent('update', id, after));
      });
    await stageChanges(this.d.cmd, this.d.keys, this.table.name, this.post, events);
  }

  /** Removes every chunk placed so far from its workers and from the placement records. */
  async abort(): Promise<void> {
    if (this.placed.length === 0) return;
    await abortPost(this.d, this.post, this.table.name, [...this.touched]);
    this.d.log.info({ post: this.post, chunks: this.placed.length }, 'POST aborted');
  }
}

/** The records with their encrypted columns decrypted (ciphertext of table `source`, see Ingest.post). */
async function* decrypted(
  records: AsyncIterable<ParsedRecord>,
  table: TableDef,
  source: string,
  cipher: FieldCipher,
): AsyncIterable<ParsedRecord> {
  for await (const rec of records) {
    const v = rec.value;
    if (!v || typeof v !== 'object' || Array.isArray(v)) {
      yield rec; // refused by the usual check, with its message
      continue;
    }
    const row = { ...(v as Record<string, unknown>) };
    for (const c of table.encrypted ?? []) {
      if (row[c] === undefined || row[c] === null) continue;
      try {
        row[c] = cipher.decrypt(source, c, row[c]);
      } catch (e) {
        if (!(e instanceof DecryptError)) throw e;
        throw badRequest(
          `row ${rec.row}: field ${JSON.stringify(c)} does not decrypt with this coordinator's DSTORE_ENCRYPTION_KEY as a value of ${source}.${c} (${e.message}); restore with the key the backup was taken with`,
          { row: rec.row, field: c },
        );
      }
    }
    yield { row: rec.row, value: row };
  }
}

/**
 * The record's own JSON text with `_id` first, on one line, or undefined when it cannot be
 * had safely without re-serialising (then the caller stringifies the parsed value). `text`
 * is known to parse as a JSON object. Reusing it saves a JSON.stringify per row on the hot
 * path; the stored text is then the client's, which is the same JSON value. A text over
 * several lines (a pretty-printed array element) is compacted first: a stored row is one
 * line of a chunk's `rows` field, and a line break would split it into several rows.
 * Conservative: any `"_id"` elsewhere in the text or any `\u` escape (which could spell a
 * duplicate `_id` key) falls back.
 */
export function withIdFirst(text: string, id: string, generated: boolean): string | undefined {
  // Valid JSON has raw line breaks only as whitespace between tokens, never inside strings.
  const t = text.indexOf('\n') === -1 && text.indexOf('\r') === -1 ? text.trim() : compactJson(text);
  if (t.charCodeAt(0) !== 123 /* { */ || t.charCodeAt(t.length - 1) !== 125 /* } */ || t.includes('\\u'))
    return undefined;
  const head = `{"_id":${JSON.stringify(id)}`;
  if (generated) {
    if (t.includes('"_id"')) return undefined;
    const body = t.slice(1).trimStart();
    return body === '}' ? `${head}}` : `${head},${body}`;
  }
  if (!t.startsWith(head)) return undefined;
  const next = t.charCodeAt(head.length);
  if (next !== 44 /* , */ && next !== 125 /* } */) return undefined;
  return t.includes('"_id"', head.length) ? undefined : t;
}

/**
 * `text` (valid JSON) without the whitespace JSON allows between tokens; strings are kept
 * as they are. Linear, and only run on texts that span several lines.
 */
export function compactJson(text: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      // Skip the string: to its closing quote, stepping over escapes.
      for (i++; i < text.length; i++) {
        const s = text.charCodeAt(i);
        if (s === 92 /* \ */) i++;
        else if (s === 34) break;
      }
    } else if (isJsonSpace(c)) {
      out += text.slice(from, i);
      while (i + 1 < text.length && isJsonSpace(text.charCodeAt(i + 1))) i++;
      from = i + 1;
    }
  }
  return out + text.slice(from);
}

function isJsonSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

/** Tries of a commit's XADDs once it is decided (a Redis failover may fail one). */
const COMMIT_SEND_ATTEMPTS = 5;

/**
 * Second step of a commit (after begin-commit-1.lua marked it): sends COMMIT to every
 * worker that got a chunk (under the table's write-order lock; a commit waits for it
 * rather than fail, since the decision is taken), then closes the open record. Also run by clean-up for a POST
 * whose coordinator died in between; COMMIT is idempotent, so sending it twice is harmless.
 */
export async function finishCommit(
  ctx: CommitContext,
  post: string,
  table: string,
  workers: string[],
  /** Runs under the write-order lock before the COMMIT is sent (a throw sends nothing). */
  before?: () => Promise<void>,
  /** Whether the POST staged upserts (unknown: look). */
  upserts = true,
): Promise<void> {
  const { cmd, keys } = ctx;
  const staged = upserts ? await stagedUpserts(ctx, post) : [];
  // In write order with UPDATE/DELETE: they reach committed rows only, so a COMMIT one
  // replica applies before an UPDATE and another after would leave them different.
  await inWriteOrder(
    ctx,
    table,
    `the COMMIT of POST ${post}`,
    async () => {
      await before?.();
      // The decision is taken: a failed XADD (a failover) is tried again, not reported.
      for (let attempt = 1; ; attempt++) {
        try {
          await sendCommitOps(ctx, table, post, workers, staged);
          return;
        } catch (e) {
          if (attempt === COMMIT_SEND_ATTEMPTS) throw e;
          ctx.log.warn({ err: e, post, attempt }, 'sending a COMMIT failed; trying again');
          await new Promise((r) => setTimeout(r, 250 * attempt));
        }
      }
    },
    'proceed',
  );
  // Closing the record makes the POST readable: the placement version tells cached readers.
  const close = cmd
    .multi()
    .hdel(keys.openPosts, post)
    .del(keys.postChunks(post), keys.postWorkers(post), keys.postUpserts(post));
  bumpPlacement(close, keys, [table]);
  await close.exec();
  if (staged.length > 0)
    await unmarkUpserts(
      ctx,
      table,
      post,
      staged.flatMap((b) => b.ids),
    );
}

/** A row's JSON text with the columns it lacks set to their defaults. */
function withDefaults(line: string, defaults: Record<string, unknown>): string {
  const row = JSON.parse(line) as Record<string, unknown>;
  let filled = false;
  for (const col in defaults)
    if (!Object.hasOwn(row, col)) {
      row[col] = defaults[col];
      filled = true;
    }
  return filled ? JSON.stringify(row) : line;
}

/**
 * Aborts an open POST: forgets its placement (unless it committed meanwhile) and sends
 * ABORT to every worker that got a chunk. Used by a failing POST and by the clean-up job.
 * Returns false when the POST was not open.
 */
export async function abortPost(
  ctx: Pick<CoordinatorContext, 'cmd' | 'keys' | 'replyTo' | 'failpoints'>,
  post: string,
  table: string,
  workers: string[],
): Promise<boolean> {
  const { cmd, keys } = ctx;
  const workerKeys = workers.map((w) => keys.workerChunks(w));
  try {
    scriptResult(
      'unregister-chunks.lua',
      await cmd.unregisterChunks(
        6 + workerKeys.length,
        keys.chunks,
        keys.tableChunks(table),
        keys.openPosts,
        keys.postChunks(post),
        keys.postWorkers(post),
        keys.underReplicated,
        ...workerKeys,
        post,
      ),
    );
  } catch (e) {
    // Not open (done already) or being committed (the commit wins): nothing to abort.
    if (e instanceof ScriptError && (e.code === SCRIPT_CODES.POST_NOT_OPEN || e.code === SCRIPT_CODES.POST_COMMITTING))
      return false;
    throw e;
  }
  const msg = build(AbortMessage, { op: ulid(), post, replyTo: ctx.replyTo });
  const args = msg.toArgs();
  await xaddEach(ctx, workers, args);
  // Its change events, if it staged any: an aborted POST changed nothing.
  await cmd.del(keys.changesStaged(table, post));
  const staged = await stagedUpserts(ctx, post);
  if (staged.length > 0) {
    await unmarkUpserts(
      ctx,
      table,
      post,
      staged.flatMap((b) => b.ids),
    );
    await cmd.del(keys.postUpserts(post));
  }
  return true;
}
