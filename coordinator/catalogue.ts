import { build, SetupTableMessage, DropTableMessage } from '../common/messages';
import type { Keys } from '../common/keys';
import { assertName } from '../common/names';
import type { DstoreRedis } from '../common/redis';
import { broadcastToAll, type CoordinatorContext } from './context';
import { badRequest, conflict, notFound, unavailable } from './errors';
import { inWriteOrder, OrderLockTimeout } from './order-lock';
import { planAlter, type AlterPlan } from './schema-change';
import type { TableEncryption } from './encryption';
import type { IndexListing } from '../common/api';
import { parseChanges, type ChangeRetention } from '../common/changes';
import { checkIndex, IndexError, INDEX_LIMITS, type IndexSpec, type IndexStatus } from '../common/indexes';
import { parseTableSchema } from './schema';
import type { TableDef } from './table-def';

export type { TableDef } from './table-def';

/** A table's secondary indexes as the catalogue holds them, or undefined (none, or no such table). */
export async function readTableIndexes(
  ctx: Pick<CoordinatorContext, 'cmd' | 'keys'>,
  table: string,
): Promise<TableDef['indexes']> {
  const raw = await ctx.cmd.hget(ctx.keys.tables, table);
  return raw ? (JSON.parse(raw) as TableDef).indexes : undefined;
}

/**
 * The table catalogue, kept in Redis so that every coordinator sees the same tables.
 * Creating or dropping a table also sends SETUP_TABLE / DROP_TABLE through the ops
 * stream of every known worker.
 */
export class Catalogue {
  private readonly cmd: DstoreRedis;
  private readonly keys: Keys;

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly opTimeoutMs: number,
    private readonly encryption?: TableEncryption,
  ) {
    this.cmd = ctx.cmd;
    this.keys = ctx.keys;
  }

  /** Checks a table name, turning a bad one into a 400. */
  static checkName(name: string): string {
    try {
      return assertName('table', name);
    } catch (e) {
      throw badRequest((e as Error).message, { field: 'name' });
    }
  }

  /**
   * Creates a table. Creating one that exists with the same schema is a no-op
   * (`created: false`); with another schema it is a 409.
   */
  async create(
    name: string,
    schemaInput?: unknown,
    changesInput?: unknown,
  ): Promise<{ table: TableDef; created: boolean }> {
    Catalogue.checkName(name);
    const { schema, encrypted } = parseTableSchema(schemaInput);
    let changes: ChangeRetention | false = false;
    try {
      if (changesInput !== undefined) changes = parseChanges(changesInput);
    } catch (e) {
      throw badRequest(`changes: ${(e as Error).message}`, { field: 'changes' });
    }
    const keyCheck = this.encryption ? this.encryption.keyCheckFor(name, encrypted) : undefined;
    if (encrypted.length > 0 && !keyCheck)
      throw badRequest('this coordinator cannot create encrypted columns', { field: 'schema' });
    const def: TableDef = {
      name,
      version: 1,
      createdAt: Date.now(),
      ...(schema ? { schema } : {}),
      ...(encrypted.length ? { encrypted, keyCheck } : {}),
      ...(changes ? { changes } : {}),
    };
    const created = (await this.cmd.hsetnx(this.keys.tables, name, JSON.stringify(def))) === 1;
    if (!created) {
      const existing = (await this.get(name))!;
      if (
        JSON.stringify(existing.schema ?? null) !== JSON.stringify(schema ?? null) ||
        JSON.stringify(existing.encrypted ?? []) !== JSON.stringify(encrypted)
      ) {
        throw conflict(`table ${name} exists with another schema; drop it first or use the same schema`, {
          table: name,
        });
      }
      this.encryption?.cipherFor(existing, 'create');
      return { table: existing, created: false };
    }
    await broadcastToAll(
      this.ctx,
      (op) => build(SetupTableMessage, { op, table: name, schema, version: def.version, replyTo: this.ctx.replyTo }),
      this.opTimeoutMs,
    );
    return { table: def, created: true };
  }

  /**
   * Declares (or re-declares with other fields) a secondary index and sends the table's new
   * index set to every worker through its ops stream, so a worker that is down builds it
   * when it catches up; chunks placed or copied later carry the set too. Waits for the
   * live workers' acks up to the op timeout (a long build may outlast it: the index then
   * shows `building` until the worker has it).
   */
  async putIndex(table: string, name: string, body: unknown): Promise<{ index: IndexSpec; created: boolean }> {
    let spec: IndexSpec;
    try {
      spec = checkIndex(name, body);
    } catch (e) {
      if (e instanceof IndexError) throw badRequest(e.message, { field: e.field });
      throw e;
    }
    let created = false;
    const { def, changed } = await this.updateIndexes(table, (ix) => {
      const before = ix[name];
      created = !before;
      if (before && JSON.stringify(before.fields) === JSON.stringify(spec.fields)) return false;
      if (!before && Object.keys(ix).length >= INDEX_LIMITS.perTable)
        throw badRequest(`table ${table} has ${INDEX_LIMITS.perTable} indexes, the most a table may have`, {
          field: 'index',
        });
      ix[name] = spec;
      return true;
    });
    if (changed) await this.sendIndexes(def);
    return { index: spec, created };
  }

  /** Drops a secondary index (a 404 when there is none of that name) on every worker. */
  async dropIndex(table: string, name: string): Promise<void> {
    const { def } = await this.updateIndexes(table, (ix) => {
      if (!ix[name])
        throw notFound(`table ${table} has no index ${JSON.stringify(name)}; see GET /tables/${table}/indexes`);
      delete ix[name];
      return true;
    });
    await this.sendIndexes(def);
  }

  /** A table's indexes with their state on every known worker (from the workers' heartbeats). */
  async listIndexes(table: string, statuses: { id: string; indexes?: Record<string, Record<string, IndexStatus>> }[]) {
    const def = await this.require(table);
    const out: IndexListing[] = [];
    for (const [name, spec] of Object.entries(def.indexes?.indexes ?? {})) {
      const workers: IndexListing['workers'] = {};
      for (const s of statuses) {
        const st = s.indexes?.[table]?.[name];
        workers[s.id] =
          st && JSON.stringify(st.fields) === JSON.stringify(spec.fields)
            ? { state: st.state, ...(st.error ? { error: st.error } : {}) }
            : { state: 'building' };
      }
      out.push({ name, fields: spec.fields, workers });
    }
    return { table, version: def.indexes?.version ?? 0, indexes: out.sort((a, b) => (a.name < b.name ? -1 : 1)) };
  }

  /** Read-modify-write of a table's index set, compare-and-set so concurrent changes are never lost. */
  private async updateIndexes(
    table: string,
    change: (ix: Record<string, IndexSpec>) => boolean,
  ): Promise<{ def: TableDef; changed: boolean }> {
    Catalogue.checkName(table);
    for (let attempt = 0; attempt < 20; attempt++) {
      const raw = await this.cmd.hget(this.keys.tables, table);
      if (!raw)
        throw notFound(
          `table ${table} does not exist; create it with PUT /tables/${table} (dstore table create ${table})`,
        );
      const def = JSON.parse(raw) as TableDef;
      const ix = { ...(def.indexes?.indexes ?? {}) };
      if (!change(ix)) return { def, changed: false };
      const next: TableDef = { ...def, indexes: { version: (def.indexes?.version ?? 0) + 1, indexes: ix } };
      if ((await this.cmd.hsetIf(this.keys.tables, table, raw, JSON.stringify(next))) === 1)
        return { def: next, changed: true };
    }
    throw conflict(`the catalogue entry of table ${table} kept changing; try again`);
  }

  /** Sends a table's definition (schema, version, indexes) to every worker's ops stream. */
  private async sendIndexes(def: TableDef): Promise<void> {
    await broadcastToAll(
      this.ctx,
      (op) =>
        build(SetupTableMessage, {
          op,
          table: def.name,
          schema: def.schema,
          version: def.version,
          indexes: def.indexes,
          replyTo: this.ctx.replyTo,
        }),
      this.opTimeoutMs,
    );
  }

  /**
   * Changes a typed table's columns (`PATCH /tables/:name`): `addColumns` `{"col": "type"}` or
   * `{"col": {"type": "integer", "default": 0}}`, `dropColumns` `["col"]`. The catalogue entry
   * is swapped under the table's write-order lock, so each POST's COMMIT is ordered before it
   * (its rows are old rows, given the defaults and stripped of dropped columns by the rows
   * change {@link AlterPlan} describes) or after it (a POST checked against the old schema is
   * then refused at its commit: coordinator/ingest.ts). Every worker gets the new schema
   * through its ops stream. Returns what the rows need.
   */
  async alter(name: string, body: unknown): Promise<AlterPlan> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const raw = await this.cmd.hget(this.keys.tables, Catalogue.checkName(name));
      if (!raw)
        throw notFound(
          `table ${name} does not exist; create it with PUT /tables/${name} (dstore table create ${name})`,
        );
      const def = JSON.parse(raw) as TableDef;
      const plan = planAlter(def, body);
      const swapped = await inWriteOrder(
        this.ctx,
        name,
        `the schema change of ${name}`,
        async () => {
          if ((await this.cmd.hsetIf(this.keys.tables, name, raw, JSON.stringify(plan.table))) !== 1) return false;
          if (def.changes && !plan.table.changes) await this.forgetChanges(name);
          return true;
        },
        'fail',
      ).catch((e: unknown) => {
        if (e instanceof OrderLockTimeout) throw unavailable(e.message, { table: name });
        throw e;
      });
      if (!swapped) continue;
      await this.sendIndexes(plan.table);
      return plan;
    }
    throw conflict(`the catalogue entry of table ${name} kept changing; try again`);
  }

  /** Every table, by name. */
  async list(): Promise<TableDef[]> {
    const all = await this.cmd.hgetall(this.keys.tables);
    return Object.values(all)
      .map((v) => JSON.parse(v) as TableDef)
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** One table, or undefined. */
  async get(name: string): Promise<TableDef | undefined> {
    const raw = await this.cmd.hget(this.keys.tables, name);
    return raw ? (JSON.parse(raw) as TableDef) : undefined;
  }

  /** One table, or a 404 that says how to create it. */
  async require(name: string): Promise<TableDef> {
    Catalogue.checkName(name);
    const t = await this.get(name);
    if (!t)
      throw notFound(`table ${name} does not exist; create it with PUT /tables/${name} (dstore table create ${name})`);
    return t;
  }

  /** Drops a table: removes it from the catalogue, then from every worker. */
  async drop(name: string): Promise<void> {
    await this.require(name);
    await this.cmd.hdel(this.keys.tables, name);
    await broadcastToAll(
      this.ctx,
      (op) => build(DropTableMessage, { op, table: name, replyTo: this.ctx.replyTo }),
      this.opTimeoutMs,
    );
    await this.forgetChunks(name);
    await this.cmd.unlink(this.keys.changes(name));
  }

  /**
   * Changes turned off: the events kept are dropped, and the stream counts one more event
   * than it held (a marker, removed with them), so a watcher's token from before is refused
   * (410) once changes are on again: the writes in between were not recorded.
   */
  private async forgetChanges(table: string): Promise<void> {
    const key = this.keys.changes(table);
    await this.cmd.xadd(key, 'NOMKSTREAM', '*', 'op', 'gap', 'id', '-', 'row', '', 'n', '0');
    await this.cmd.xtrim(key, 'MAXLEN', 0);
  }

  /** Removes the placement records of a dropped table's chunks. */
  private async forgetChunks(table: string): Promise<void> {
    const key = this.keys.tableChunks(table);
    const chunks = await this.cmd.smembers(key);
    for (let i = 0; i < chunks.length; i += 1000) {
      const part = chunks.slice(i, i + 1000);
      const metas = await this.cmd.hmget(this.keys.chunks, ...part);
      const p = this.cmd.pipeline();
      part.forEach((c, j) => {
        const meta = metas[j] ? (JSON.parse(metas[j]!) as { replicas: string[] }) : undefined;
        for (const w of meta?.replicas ?? []) p.srem(this.keys.workerChunks(w), c);
      });
      p.hdel(this.keys.chunks, ...part);
      await p.exec();
    }
    // Cached placements of the table (and of one created again under its name) are stale now.
    await this.cmd.multi().del(key).incr(this.keys.placementVersion(table)).exec();
    // The id index may be large: UNLINK frees it off Redis' main thread. Another slot.
    await this.cmd.unlink(this.keys.idIndex(table), this.keys.upserting(table));
  }
}
