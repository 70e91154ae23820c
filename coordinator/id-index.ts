import type { Keys } from '../common/keys';
import type { DstoreRedis } from '../common/redis';
import { conflict, unavailable, type ApiError } from './errors';

/** Answers which of `ids` are stored (committed) rows of `table`, with a read like any other. */
export type ExistingIds = (table: string, ids: string[]) => Promise<Set<string>>;

/** Crockford's base32, the alphabet of ULIDs (chunk ids) and of generated `_id`s. */
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * A generated `_id`: the id of the chunk it was stored in (a 26-character ULID) and its
 * place in that chunk (4 base32 characters, up to 32⁴ rows). It names its chunk, so it needs
 * no entry in the id index (no Redis memory per row), and two can never be equal.
 */
export const GENERATED_ID = /^[0-7][0-9A-HJKMNP-TV-Z]{29}$/;

/** The generated `_id` of row `i` of `chunk`. */
export function generatedId(chunk: string, i: number): string {
  let tail = '';
  for (let k = 0, n = i; k < 4; k++, n = Math.floor(n / 32)) tail = CROCKFORD[n % 32] + tail;
  return chunk + tail;
}

/** The chunk a `_id` of the generated form names, or undefined for any other `_id`. */
export function chunkOfGeneratedId(id: string): string | undefined {
  return GENERATED_ID.test(id) ? id.slice(0, 26) : undefined;
}

/**
 * The chunks that may hold `ids` in `table`: for an `_id` of the generated form, the chunk it
 * names; for any `_id`, the chunk the id index holds for it (a client's `_id` is indexed,
 * including one of the generated form, e.g. a row copied from another table). An id in
 * neither is not stored. An entry can be stale (its POST aborted, its row deleted): the read that uses
 * this still checks the chunk, so stale entries cost a chunk read, never a wrong answer.
 */
export async function chunksHoldingIds(
  cmd: DstoreRedis,
  keys: Keys,
  table: string,
  ids: readonly string[],
): Promise<Set<string>> {
  const out = new Set<string>();
  for (const id of ids) {
    const c = chunkOfGeneratedId(id);
    if (c) out.add(c);
  }
  for (let i = 0; i < ids.length; i += 1000) {
    for (const c of await cmd.hmget(keys.idIndex(table), ...ids.slice(i, i + 1000))) if (c) out.add(c);
  }
  return out;
}

/** How often a chunk re-resolves ids that other POSTs kept reclaiming meanwhile. */
const MAX_ROUNDS = 5;

/**
 * The global `_id` index of each table (`<prefix>:table:{<table>}:ids`, `_id` → the chunk
 * holding it). Workers check `_id`s only within their own shard, and the token places the
 * chunks of two requests on different workers, so without it a repeated `_id` (a retried
 * POST, say) would be stored twice. Every chunk reserves its ids before any worker gets it.
 *
 * The index is never cleaned eagerly: an aborted POST's chunks and deleted rows leave their
 * entries behind. An id held by another chunk is therefore checked when it is met again:
 * - its chunk's placement is gone (the POST was aborted, or the table dropped): stale, taken;
 * - its chunk's POST is still open: that request may yet commit it, so this one is refused;
 * - otherwise the row was committed: a read asks whether it still exists; if it was deleted
 *   the id is taken, else this request is refused (409 naming the row and the `_id`).
 * Taking is a compare-and-set (take-ids-2.lua), so of two requests reclaiming one id only
 * one wins and the other meets it held again.
 */
export class IdIndex {
  constructor(
    private readonly cmd: DstoreRedis,
    private readonly keys: Keys,
    private readonly existing: ExistingIds,
  ) {}

  /**
   * Reserves `ids` for `chunk` (already registered in `{<prefix>}:chunks`). `rowOf` gives
   * the request's row number of an id, for the error. Throws a 409 when an id is taken.
   * With `upsert` (the POST's id), an id whose row is stored is not a 409: it is marked for
   * that POST (mark-upserts-2.lua) and returned with the chunk holding its row.
   */
  async reserve(
    table: string,
    chunk: string,
    ids: string[],
    rowOf: (id: string) => number,
    upsert?: string,
  ): Promise<Map<string, string>> {
    const existing = new Map<string, string>();
    if (ids.length === 0) return existing;
    const named = await this.checkGeneratedForm(table, ids, rowOf, upsert !== undefined);
    const index = this.keys.idIndex(table);
    const upserting = this.keys.upserting(table);
    const rest = named.size > 0 ? ids.filter((id) => !named.has(id)) : ids;
    let held = rest.length > 0 ? await this.cmd.reserveIds(index, chunk, ...rest) : [];
    let found = [...named].flat();
    for (let round = 0; held.length > 0 || found.length > 0; round++) {
      if (round === MAX_ROUNDS) {
        const id = held[0] ?? found[0];
        throw unavailable(
          `_id ${JSON.stringify(id)} (row ${rowOf(id)}) is being written by other requests at the same time; retry`,
          { row: rowOf(id), field: '_id' },
        );
      }
      const r = await this.resolve(table, held, rowOf, upsert !== undefined);
      found.push(...r.stored);
      held = [];
      if (r.take.length > 0) held.push(...(await this.cmd.takeIds(index, upserting, chunk, ...r.take)));
      if (r.again.length > 0) held.push(...(await this.cmd.reserveIds(index, chunk, ...r.again)));
      if (found.length > 0) {
        const stop = await this.cmd.markUpserts(index, upserting, upsert!, ...found);
        // All or none were marked: what stopped it is resolved again, the rest marked next round.
        const stopped = new Set(stop.filter((_, i) => i % 2 === 0));
        const kept: string[] = [];
        for (let i = 0; i < found.length; i += 2) {
          if (stop.length === 0) existing.set(found[i], found[i + 1]);
          else if (!stopped.has(found[i])) kept.push(found[i], found[i + 1]);
        }
        found = kept;
        held.push(...stop);
      }
    }
    return existing;
  }

  /**
   * A client's `_id` of the generated form (a row exported and posted again, say) is refused
   * when the chunk it names holds that row: generated ids are not in the index, so the index
   * alone would not see the repeat.
   */
  private async checkGeneratedForm(
    table: string,
    ids: string[],
    rowOf: (id: string) => number,
    upsert: boolean,
  ): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const named = ids.filter((id) => GENERATED_ID.test(id));
    if (named.length === 0) return out;
    const chunks = [...new Set(named.map((id) => id.slice(0, 26)))];
    const metas = await this.cmd.hmget(this.keys.chunks, ...chunks);
    const inTable = new Map<string, string>();
    chunks.forEach((c, i) => {
      const m = metas[i] ? (JSON.parse(metas[i]!) as { table: string; post: string }) : undefined;
      if (m?.table === table) inTable.set(c, m.post);
    });
    const candidates = named.filter((id) => inTable.has(id.slice(0, 26)));
    if (candidates.length === 0) return out;
    const posts = [...new Set(candidates.map((id) => inTable.get(id.slice(0, 26))!))];
    const open = await this.cmd.hmget(this.keys.openPosts, ...posts);
    posts.forEach((post, i) => {
      if (open[i] === null) return;
      const id = candidates.find((x) => inTable.get(x.slice(0, 26)) === post)!;
      throw inProgress(id, post, rowOf);
    });
    const stored = await this.existing(table, candidates);
    const dup = candidates.find((id) => stored.has(id));
    if (dup !== undefined && !upsert) throw duplicateStored(table, dup, rowOf);
    for (const id of candidates) if (stored.has(id)) out.set(id, id.slice(0, 26));
    return out;
  }

  /**
   * Sorts held ids out: the `id, holder` pairs that may be taken, the ids to reserve again (a
   * mark of an upsert POST that is gone was removed), and, for an upsert, the `id, holder`
   * pairs whose row is stored. Throws a 409 for an id another open POST is storing, or (not
   * upserting) whose row is stored.
   */
  private async resolve(
    table: string,
    held: string[],
    rowOf: (id: string) => number,
    upsert: boolean,
  ): Promise<{ take: string[]; again: string[]; stored: string[] }> {
    const out = { take: [] as string[], again: [] as string[], stored: [] as string[] };
    if (held.length === 0) return out;
    const holders = [...new Set(held.filter((h, i) => i % 2 === 1 && !h.startsWith('~')))];
    const metas = holders.length > 0 ? await this.cmd.hmget(this.keys.chunks, ...holders) : [];
    const postOf = new Map<string, string>();
    holders.forEach((c, i) => {
      if (metas[i]) postOf.set(c, (JSON.parse(metas[i]!) as { post: string }).post);
    });
    for (let i = 1; i < held.length; i += 2) if (held[i].startsWith('~')) postOf.set(held[i], held[i].slice(1));
    const posts = [...new Set(postOf.values())];
    const open = new Set<string>();
    if (posts.length > 0) {
      const records = await this.cmd.hmget(this.keys.openPosts, ...posts);
      posts.forEach((p, i) => records[i] !== null && open.add(p));
    }
    const committed: [string, string][] = [];
    for (let i = 0; i < held.length; i += 2) {
      const [id, holder] = [held[i], held[i + 1]];
      const post = postOf.get(holder);
      if (post !== undefined && open.has(post)) throw inProgress(id, post, rowOf);
      if (holder.startsWith('~')) {
        // The upsert POST that marked it is gone (committed, or died): its mark is stale.
        await this.cmd.unmarkUpserts(this.keys.upserting(table), post!, id);
        out.again.push(id);
      } else if (post === undefined) out.take.push(id, holder);
      else committed.push([id, holder]);
    }
    if (committed.length > 0) {
      const stored = await this.existing(
        table,
        committed.map(([id]) => id),
      );
      for (const [id, holder] of committed) {
        if (!stored.has(id)) out.take.push(id, holder);
        else if (upsert) out.stored.push(id, holder);
        else throw duplicateStored(table, id, rowOf);
      }
    }
    return out;
  }
}

/** A 409: another open POST (an insert, or an upsert that marked it) is storing `id`. */
function inProgress(id: string, post: string, rowOf: (id: string) => number): ApiError {
  return conflict(
    `row ${rowOf(id)}: duplicate _id ${JSON.stringify(id)}: another request still in progress (POST ${post}) is storing it; retry once it has finished`,
    { row: rowOf(id), field: '_id' },
  );
}

function duplicateStored(table: string, id: string, rowOf: (id: string) => number): ApiError {
  return conflict(
    `row ${rowOf(id)}: duplicate _id ${JSON.stringify(id)}: a row with this _id already exists in table ${table}; nothing of this request was stored (POST with ?onConflict=replace or merge to change it)`,
    { row: rowOf(id), field: '_id' },
  );
}
