import { compileFilter, FilterError, parseField } from '../common/filter';
import { build, DeleteMessage, UpdateMessage, type Message, type UpdatePreview } from '../common/messages';
import { normalizeQuery } from '../common/query';
import { stagedEvent, storedRowId } from '../common/changes';
import { changesOf, publishChanges, stageChanges } from './changes';
import { pendingMutation, placementInOrder } from './commit-send';
import type { FetchMerger } from './fetch-merger';
import type { TableDef } from './table-def';
import { badRequest, unavailable } from './errors';
import { broadcastToAll, type CoordinatorContext } from './context';
import { countOncePerChunk, type OpOutcome } from './ops';
import { readChunkMetas } from './placement';
import type { TableEncryption } from './encryption';
import { OrderLockTimeout } from './order-lock';
import { checkFilter, checkRow } from './schema';
import type { AlterPlan } from './schema-change';

/** What an UPDATE or DELETE answers. */
export interface MutationResult {
  /** Rows changed, each counted once however many replicas changed it. */
  count: number;
  /**
   * Workers that have the change queued on their stream but had not applied it when the
   * answer was sent (down, or stopped being live during the wait). They apply it before
   * answering reads again; rows only they hold are not in `count`.
   */
  pendingWorkers: string[];
}

/**
 * UPDATE and DELETE by filter. The op goes through the ops stream of every known
 * worker (one that is down applies it when it comes back, in order with its writes);
 * the answer waits for the live ones and counts each chunk once, not once per replica.
 * The XADDs run under the table's write-order lock, so every replica applies concurrent
 * UPDATEs, DELETEs and COMMITs of a table in one order.
 */
export class Mutations {
  /** UPDATEs/DELETEs of tables with changes on sent so far (DSTORE_FAILPOINT_EXIT_AFTER_SEND). */
  private sentWithChanges = 0;

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly timeoutMs: number,
    private readonly encryption?: TableEncryption,
    /** Reads (FetchMerger.read): the rows an UPDATE or DELETE of a table with changes on reaches. */
    private readonly read?: FetchMerger['read'],
  ) {}

  /** Sets fields on every row matching `where`. */
  async update(table: TableDef, where: unknown, set: unknown): Promise<MutationResult> {
    checkWhere(where);
    checkFilter(where, table.schema);
    if (!set || typeof set !== 'object' || Array.isArray(set) || Object.keys(set).length === 0) {
      throw badRequest('"set" must be a non-empty object of field → new value', { field: 'set' });
    }
    for (const field of Object.keys(set)) {
      try {
        if (parseField(field)[0] === '_id') throw badRequest('"_id" cannot be updated', { field: 'set._id' });
      } catch (e) {
        if (e instanceof FilterError) throw badRequest(`set: ${e.message}`, { field: `set.${field}` });
        throw e;
      }
    }
    if (table.schema) {
      const top = Object.fromEntries(Object.entries(set).filter(([f]) => !f.includes('.')));
      checkRow(top, table.schema, 0);
    }
    this.encryption?.checkWhere(table, where);
    const cipher = this.encryption?.cipherFor(table, 'update');
    const stored = cipher
      ? this.encryption!.encryptSet(table, cipher, set as Record<string, unknown>)
      : (set as Record<string, unknown>);
    const out = await this.send(
      table,
      (op) => build(UpdateMessage, { op, table: table.name, where, set: stored, replyTo: this.ctx.replyTo }),
      { where, preview: { set: stored } },
    );
    return result(this.ctx, out);
  }

  /**
   * The rows' side of a schema change ({@link AlterPlan}): every stored row that lacks an
   * added column gets its default, and dropped columns are removed, as one UPDATE in the
   * table's write order (so it reaches every replica, and copies being made, like any other).
   * Only rows that change are rewritten.
   */
  async alterRows(table: TableDef, plan: Pick<AlterPlan, 'fill' | 'unset'>): Promise<MutationResult> {
    const cols = Object.keys(plan.fill);
    const where = {
      $or: [...cols.map((c) => ({ [c]: { $exists: false } })), ...plan.unset.map((c) => ({ [c]: { $exists: true } }))],
    };
    const change = {
      set: {},
      ...(cols.length ? { fill: plan.fill } : {}),
      ...(plan.unset.length ? { unset: plan.unset } : {}),
    };
    const out = await this.send(
      table,
      (op) => build(UpdateMessage, { op, table: table.name, where, ...change, replyTo: this.ctx.replyTo }),
      { where, preview: change },
    );
    return result(this.ctx, out);
  }

  /** Deletes every row matching `where`. */
  async delete(table: TableDef, where: unknown): Promise<MutationResult> {
    checkWhere(where);
    checkFilter(where, table.schema);
    this.encryption?.checkWhere(table, where);
    const out = await this.send(
      table,
      (op) => build(DeleteMessage, { op, table: table.name, where, replyTo: this.ctx.replyTo }),
      { where },
    );
    return result(this.ctx, out);
  }

  private async send(
    def: TableDef,
    make: (op: string) => UpdateMessage | DeleteMessage,
    reach: Reach,
  ): Promise<OpOutcome> {
    const table = def.name;
    if ((await this.ctx.workers.live()).length === 0)
      throw unavailable('no live workers; start one with `dstore worker` (or `dstore up`)');
    let out: OpOutcome;
    try {
      out = await broadcastToAll(this.ctx, make, this.timeoutMs, {
        inflight: true,
        orderTable: table,
        inOrder: (send, op, msg) => this.withChanges(table, reach, send, op, msg),
      });
    } catch (e) {
      if (e instanceof OrderLockTimeout) throw unavailable(e.message, { table });
      throw e;
    }
    const refused = [...out.acks.values()].find((a) => a.status === 'error');
    if (refused) throw badRequest(`worker ${refused.worker} refused the ${refused.kind}: ${refused.error}`);
    if (out.missing.length > 0) {
      throw unavailable(
        `workers ${out.missing.join(', ')} did not confirm within ${this.timeoutMs} ms; the change is queued on their streams and will apply when they catch up`,
        {
          workers: out.missing,
        },
      );
    }
    return out;
  }

  /**
   * Under the table's write-order lock, for a table with changes on (read again here: the
   * lock orders this against a PATCH that turns them on or off): reads the rows the op
   * reaches, as the op will leave them (a DELETE: their `_id`s), with the exactness of any
   * read (a chunk no live worker holds fails the op, 503, before anything is sent); stages
   * them as the op's change events; records the op as the table's pending write; sends it;
   * moves the events into the change stream; clears the record. No other write of the table
   * can come between the read and the op. A coordinator that dies part way leaves the
   * record, and the next holder of the lock sends the op again (workers apply an op id
   * once) and moves what is left of its events (commit-send.ts, resumePending).
   */
  private async withChanges(
    table: string,
    reach: Reach,
    send: () => Promise<void>,
    op: string,
    msg: Message,
  ): Promise<void> {
    const { cmd, keys } = this.ctx;
    const raw = await cmd.hget(keys.tables, table);
    const changes = changesOf(raw);
    if (!changes || !this.read) return send();
    const q = normalizeQuery(reach.preview ? { where: reach.where } : { where: reach.where, fields: ['_id'] });
    // The chunks the op reaches: those of POSTs whose COMMIT is before it on the streams,
    // including POSTs whose commit was sent but whose record is not closed yet.
    const placement = (await placementInOrder(this.ctx, [table])).placements.get(table);
    if (!placement) return send(); // dropped meanwhile: the op reaches nothing
    try {
      for await (const piece of this.read(table, q, {
        placement,
        ...(reach.preview ? { preview: reach.preview } : {}),
      })) {
        if (!('rows' in piece)) continue;
        // Staged batch by batch as they come: an UPDATE of every row holds one batch here, not the table.
        const events: string[] = [];
        for (const line of piece.rows.split('\n')) {
          if (line === '') continue;
          const id = storedRowId(line);
          events.push(reach.preview ? stagedEvent('update', id, line) : stagedEvent('delete', id));
        }
        await stageChanges(cmd, keys, table, op, events);
      }
    } catch (e) {
      // Nothing was sent: the op fails (a 503 naming the chunks no live worker holds), and so
      // do its events.
      await cmd.del(keys.changesStaged(table, op)).catch(() => undefined);
      throw e;
    }
    await cmd.set(keys.orderPending(table), pendingMutation(op, msg));
    await send();
    if (this.ctx.failpoints?.exitAfterSend && ++this.sentWithChanges === this.ctx.failpoints.exitAfterSend)
      process.exit(137);
    await publishChanges(cmd, keys, table, op, changes);
    await cmd.del(keys.orderPending(table));
  }
}

/** Which rows an UPDATE or DELETE reaches, and what an UPDATE makes of them. */
interface Reach {
  where: unknown;
  /** An UPDATE's change; absent for a DELETE. */
  preview?: UpdatePreview;
}

/**
 * The answer: rows changed, counted once per chunk and only from its recorded replicas. A
 * worker may also hold a copy being made for a move or a repair, not verified yet: it
 * applied the change too, but its count may be off until the copy is checked.
 */
async function result(ctx: CoordinatorContext, out: OpOutcome): Promise<MutationResult> {
  const chunks = new Set<string>();
  for (const a of out.acks.values()) for (const c of Object.keys(a.counts ?? {})) chunks.add(c);
  const metas = await readChunkMetas(ctx.cmd, ctx.keys, [...chunks]);
  const count = countOncePerChunk(out.acks.values(), (chunk) => metas.get(chunk)?.replicas);
  return { count, pendingWorkers: out.sentTo.filter((w) => !out.acks.has(w)).sort() };
}

function checkWhere(where: unknown): void {
  if (where === undefined || where === null)
    throw badRequest('"where" is required and must be an object (use {} to match every row)', { field: 'where' });
  try {
    compileFilter(where);
  } catch (e) {
    if (e instanceof FilterError) throw badRequest(e.message, { field: e.path });
    throw e;
  }
}
