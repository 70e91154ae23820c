import { build, SetupTableMessage, DropTableMessage } from '../common/messages';
import type { Keys } from '../common/keys';
import { assertName } from '../common/names';
import type { DstoreRedis } from '../common/redis';
import { broadcastToAll, type CoordinatorContext } from './context';
import { badRequest, conflict, notFound } from './errors';
import type { TableEncryption } from './encryption';
import { parseTableSchema } from './schema';
import type { TableDef } from './table-def';

export type { TableDef } from './table-def';

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
  async create(name: string, schemaInput?: unknown): Promise<{ table: TableDef; created: boolean }> {
    Catalogue.checkName(name);
    const { schema, encrypted } = parseTableSchema(schemaInput);
    const keyCheck = this.encryption ? this.encryption.keyCheckFor(name, encrypted) : undefined;
    if (encrypted.length > 0 && !keyCheck)
      throw badRequest('this coordinator cannot create encrypted columns', { field: 'schema' });
    const def: TableDef = {
      name,
      version: 1,
      createdAt: Date.now(),
      ...(schema ? { schema } : {}),
      ...(encrypted.length ? { encrypted, keyCheck } : {}),
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
    await this.cmd.unlink(this.keys.idIndex(table));
  }
}
