import type { Keys } from '../common/keys';
import { chunkSetToken } from '../common/messages';
import type { DstoreRedis } from '../common/redis';
import { scriptResult } from '../common/script-codes';

/** Placement record of a chunk (`<prefix>:chunks`): where its copies are. */
export interface ChunkMeta {
  table: string;
  post: string;
  replicas: string[];
  rows: number;
}

/** An open POST (`<prefix>:posts:open`). */
export interface OpenPost {
  coordinator: string;
  table: string;
  at: number;
  /**
   * Set by begin-commit-1.lua to the Redis time (ms) of the decision: the POST commits (clean-up
   * finishes it rather than abort it). `true` in records of older versions.
   */
  committing?: number | boolean;
}

/**
 * What a read of one table needs from the placement records: every chunk a read must
 * answer, with its replicas, as of `version` (`<prefix>:table:<t>:placement`).
 */
export interface TablePlacement {
  version: string;
  /**
   * Chunks of committed POSTs → their replica lists. A POST still open (being sent, or being
   * committed) is left out whole: it was not acknowledged before the read began, and
   * leaving it out whole keeps a POST all-or-nothing for reads too.
   */
  chunks: ReadonlyMap<string, readonly string[]>;
}

/** Parses placement records as HMGET returns them (`null` for a chunk with none). */
function parseMetas(ids: readonly string[], raw: readonly (string | null)[]): Map<string, ChunkMeta> {
  const out = new Map<string, ChunkMeta>();
  ids.forEach((id, i) => {
    const r = raw[i];
    if (r) out.set(id, JSON.parse(r) as ChunkMeta);
  });
  return out;
}

/** Placement records of `ids` (those without one are left out), read 1000 at a time. */
export async function readChunkMetas(
  cmd: DstoreRedis,
  keys: Keys,
  ids: readonly string[],
): Promise<Map<string, ChunkMeta>> {
  const out = new Map<string, ChunkMeta>();
  for (let i = 0; i < ids.length; i += 1000) {
    const part = ids.slice(i, i + 1000);
    for (const [id, m] of parseMetas(part, await cmd.hmget(keys.chunks, ...part))) out.set(id, m);
  }
  return out;
}

/** One chunk's placement record, or undefined when it has none (aborted, dropped). */
export async function readChunkMeta(cmd: DstoreRedis, keys: Keys, chunk: string): Promise<ChunkMeta | undefined> {
  const raw = await cmd.hget(keys.chunks, chunk);
  return raw ? (JSON.parse(raw) as ChunkMeta) : undefined;
}

/** A placement record as read, kept with its text so that a change can be made only to it. */
export interface ReadRecord extends ChunkMeta {
  readonly raw: string;
}

/** One chunk's placement record with its text (for {@link setReplicas}), or undefined. */
export async function readChunkRecord(cmd: DstoreRedis, keys: Keys, chunk: string): Promise<ReadRecord | undefined> {
  const raw = await cmd.hget(keys.chunks, chunk);
  return raw ? { ...(JSON.parse(raw) as ChunkMeta), raw } : undefined;
}

/** What the under-replicated set records for a chunk after {@link setReplicas}. */
export type UnderReplicated = 'clear' | 'keep' | { dueMs: number };

/**
 * Gives a chunk a new replica list, only if its record is still `read`
 * (common/lua/set-placement.lua): the workers' chunk sets and the table's placement version
 * change in the same step. Throws a ScriptError: RECORD_CHANGED when another job changed
 * the record meanwhile, TARGET_UNAVAILABLE when a worker it adds is draining or retired.
 */
export async function setReplicas(
  cmd: DstoreRedis,
  keys: Keys,
  chunk: string,
  read: ReadRecord,
  replicas: readonly string[],
  under: UnderReplicated,
): Promise<void> {
  const { raw, ...meta } = read;
  const added = replicas.filter((w) => !meta.replicas.includes(w));
  const removed = meta.replicas.filter((w) => !replicas.includes(w));
  const workers = [...added, ...removed];
  const keyList = [
    keys.chunks,
    keys.placementVersion(meta.table),
    keys.draining,
    keys.retired,
    keys.underReplicated,
    ...workers.map((w) => keys.workerChunks(w)),
  ];
  const due = under === 'clear' ? '' : under === 'keep' ? '-' : String(under.dueMs);
  const args = [chunk, raw, JSON.stringify({ ...meta, replicas }), String(added.length), due, ...workers];
  scriptResult('set-placement.lua', await cmd.setPlacement(keyList.length, ...keyList, ...args));
}

/**
 * Readable placements per table, cached until the table's placement version changes.
 * Every change that can make a read need another chunk or ask another worker bumps the
 * version in the same step (closing a committed POST's record, the record updates of
 * repair, moves and lost shards), so a read that compares versions after it began sees
 * every write acknowledged before it. A cache older than its version only sends a worker after
 * a copy it no longer has: it answers `missing` and the read reloads.
 */
export class PlacementCache {
  private readonly cache = new Map<string, TablePlacement>();

  constructor(
    private readonly cmd: DstoreRedis,
    private readonly keys: Keys,
  ) {}

  /** The current version of a table's placement (`0` before any). */
  async version(table: string): Promise<string> {
    return (await this.cmd.get(this.keys.placementVersion(table))) ?? '0';
  }

  /**
   * The table's placement: the cached one when `version` (read after the read began) is the
   * cached version, otherwise read from Redis.
   */
  async get(table: string, version?: string): Promise<TablePlacement> {
    const hit = this.cache.get(table);
    if (hit && version !== undefined && hit.version === version) return hit;
    const loaded = await this.load(table);
    if (this.cache.size >= 1000) this.cache.clear();
    this.cache.set(table, loaded);
    return loaded;
  }

  /** Forgets a table's cached placement (a worker lacked a chunk it was sent for). */
  invalidate(table: string): void {
    this.cache.delete(table);
  }

  private async load(table: string): Promise<TablePlacement> {
    // One slot: the version, the chunk set and the open POSTs as of one moment. The records
    // read after it may be newer, never older, than that version.
    const [[, version], [, ids], [, open]] = (await this.cmd
      .multi()
      .get(this.keys.placementVersion(table))
      .smembers(this.keys.tableChunks(table))
      .hgetall(this.keys.openPosts)
      .exec()) as [[null, string | null], [null, string[]], [null, Record<string, string>]];
    const pending = new Set<string>();
    for (const [post, raw] of Object.entries(open))
      if ((JSON.parse(raw) as OpenPost).table === table) pending.add(post);
    const metas = await readChunkMetas(this.cmd, this.keys, ids);
    const chunks = new Map<string, string[]>();
    for (const [id, m] of metas) if (!pending.has(m.post)) chunks.set(id, m.replicas);
    return { version: version ?? '0', chunks };
  }
}

/** Per placement, each worker's chunks, and their token once asked for. */
const heldSets = new WeakMap<TablePlacement, Map<string, { chunks: string[]; token?: string }>>();

/**
 * The {@link chunkSetToken} of every chunk `placement` puts on `worker`, when `asked` (how
 * many of them a read asks of it) is all of them; otherwise undefined. Made once per
 * placement and worker.
 */
export function wholeSetToken(placement: TablePlacement, worker: string, asked: number): string | undefined {
  let byWorker = heldSets.get(placement);
  if (!byWorker) {
    byWorker = new Map();
    for (const [chunk, replicas] of placement.chunks)
      for (const w of replicas) {
        const held = byWorker.get(w);
        if (held) held.chunks.push(chunk);
        else byWorker.set(w, { chunks: [chunk] });
      }
    heldSets.set(placement, byWorker);
  }
  const held = byWorker.get(worker);
  if (!held || held.chunks.length !== asked) return undefined;
  return (held.token ??= chunkSetToken(held.chunks));
}

/** Bumps the placement version of tables (queued on a MULTI or pipeline when given one). */
export function bumpPlacement(target: { incr(key: string): unknown }, keys: Keys, tables: Iterable<string>): void {
  for (const t of new Set(tables)) target.incr(keys.placementVersion(t));
}
