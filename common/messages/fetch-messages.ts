import { createHash } from 'node:crypto';
import {
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsObject,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
} from 'class-validator';
import { Message, type FieldKind } from './codec';
import { IsId, IsIdList, IsName, IsStreamKey } from './common-rules';
import type { AggregateSpec, SortSpec } from '../query';
import type { SqlValue } from '../sqlite-order';

/** A Redis stream id (`<ms>-<seq>`). */
const STREAM_ID = /^\d{1,20}-\d{1,20}$/;

/**
 * coordinator → one worker, on that worker's fetch channel: read these chunks of a table.
 * The coordinator chose, from the placement records, which replica answers each chunk the
 * read needs; the worker answers exactly the chunks it is asked for, or says which of them
 * it does not hold (code `missing`), so that every chunk is answered exactly once or the
 * read knows it is not.
 */
export class FetchMessage extends Message {
  static readonly type = 'FETCH';
  static readonly codec: Record<string, FieldKind> = {
    req: 'string',
    worker: 'string',
    replyTo: 'string',
    table: 'string',
    chunks: 'list',
    where: 'json',
    fields: 'json',
    sort: 'json',
    limit: 'int',
    aggregate: 'json',
    groupBy: 'json',
    after: 'json',
    tail: 'string',
    window: 'int',
    timeoutMs: 'int',
    explain: 'bool',
    snapshot: 'string',
    preview: 'json',
  };
  readonly type = FetchMessage.type;
  @IsId() req!: string;
  /** The worker asked (a FETCH for another worker is ignored). */
  @IsName() worker!: string;
  @IsStreamKey() replyTo!: string;
  @IsName() table!: string;
  /**
   * The chunks this worker answers for in this read, each of which it must hold committed; or
   * one {@link chunkSetToken}: every chunk it holds committed of the table, which must be the
   * set the token names (else it answers `unlisted` and is asked again with the list).
   */
  @IsIdList() chunks!: string[];
  @IsOptional() where?: unknown;
  @IsOptional() @IsArray() fields?: string[];
  @IsOptional() @IsArray() sort?: SortSpec[];
  @IsOptional() @IsInt() @Min(0) limit?: number;
  @IsOptional() @IsArray() aggregate?: AggregateSpec[];
  @IsOptional() @IsArray() groupBy?: string[];
  /** A page's keyset start, `[sortKey…, _id]` (see QuerySpec.after): only rows after it. */
  @IsOptional() @IsArray() after?: SqlValue[];
  /**
   * The read fence: the last id of this worker's ops stream, read by the coordinator after
   * the read began. The worker answers only once it has applied up to it. Absent: the worker
   * reads its stream's tail itself (later, so covering at least as much).
   */
  @IsOptional() @Matches(STREAM_ID) tail?: string;
  /**
   * Flow control: the worker sends batches `seq < window` and then waits for
   * {@link FetchCreditMessage}s. Absent: no waiting.
   */
  @IsOptional() @IsInt() @Min(1) window?: number;
  /** How long the coordinator waits; a worker gives up waiting to catch up before that. */
  @IsInt() @Min(1) @Max(3_600_000) timeoutMs!: number;
  /** Answer one line `{"sqlite": [steps]}`, SQLite's plan for the query, instead of rows. */
  @IsOptional() @IsBoolean() explain?: boolean;
  /**
   * A backup's id: read the snapshot the worker kept when it applied that backup's BACKUP
   * entry (the cut), not the shard as it is now. A worker without it answers `no-snapshot`.
   */
  @IsOptional() @IsId() snapshot?: string;
  /**
   * Answer each matching row as this UPDATE would leave it (`set`, `fill`, `unset` as in
   * {@link UpdatePreview}), not as it is: the after-images of an UPDATE about to be sent, for
   * its change events (coordinator/mutations.ts). Plain row reads only.
   */
  @IsOptional() @IsObject() preview?: UpdatePreview;
}

/** The fields of an UPDATE that decide what it makes of a row (see UpdateMessage). */
export interface UpdatePreview {
  set: Record<string, unknown>;
  fill?: Record<string, unknown>;
  unset?: string[];
}

/**
 * coordinator → the worker answering a FETCH, on the same channel: batches `seq < granted`
 * may be sent; `granted = -1`: the read is over, stop.
 */
export class FetchCreditMessage extends Message {
  static readonly type = 'FETCH_CREDIT';
  static readonly codec: Record<string, FieldKind> = { req: 'string', worker: 'string', granted: 'int' };
  readonly type = FetchCreditMessage.type;
  @IsId() req!: string;
  @IsName() worker!: string;
  @IsInt() @Min(-1) granted!: number;
}

/**
 * coordinator → one worker, on its fetch channel: the digests of these chunks (scrub, repair
 * and copy checks), held or not, after the read fence `tail`. Answered with DIGEST_RESP.
 */
export class DigestMessage extends Message {
  static readonly type = 'DIGEST';
  static readonly codec: Record<string, FieldKind> = {
    req: 'string',
    worker: 'string',
    replyTo: 'string',
    table: 'string',
    chunks: 'list',
    tail: 'string',
    timeoutMs: 'int',
  };
  readonly type = DigestMessage.type;
  @IsId() req!: string;
  @IsName() worker!: string;
  @IsStreamKey() replyTo!: string;
  @IsName() table!: string;
  @IsIdList() chunks!: string[];
  /** The read fence, as in {@link FetchMessage.tail}. */
  @IsOptional() @Matches(STREAM_ID) tail?: string;
  @IsInt() @Min(1) @Max(3_600_000) timeoutMs!: number;
}

/** One chunk's line in a digest answer (scrub, copy checks). */
export interface ChunkDigestLine {
  chunk: string;
  /** Digest recorded when the worker last wrote the chunk. */
  stored?: string;
  /** Digest of what its file holds now. */
  actual?: string;
  /** Why there is no digest: {@link DIGEST_NOT_HELD}, {@link DIGEST_UNCOMMITTED}, or a read error. */
  error?: string;
}

/** The version of the chunk digests this code computes: the prefix of each (worker/chunk-digest.ts). */
export const DIGEST_VERSION = 'd2';

/** The digest of a chunk with no rows (`<version>:<rows>:<hash>`, see worker/chunk-digest.ts). */
export const DIGEST_EMPTY = `${DIGEST_VERSION}:0:0000000000000000`;

/**
 * The version of a digest: `d2`, or `d1` for the first form (`<rows>:<sum>`, no prefix).
 * Digests of different versions cannot be compared (a worker not yet upgraded).
 */
export function digestVersion(digest: string): string {
  return /^d\d+:/.test(digest) ? digest.slice(0, digest.indexOf(':')) : 'd1';
}

/** The `error` of a digest line for a chunk the worker does not hold. */
export const DIGEST_NOT_HELD = 'not held';

/** The `error` of a digest line for a chunk the worker holds but whose POST it has not committed. */
export const DIGEST_UNCOMMITTED = 'not committed';

/** What a FETCH_RESP batch carries. */
export const FETCH_MODES = ['rows', 'sorted', 'agg'] as const;
export type FetchMode = (typeof FETCH_MODES)[number];

/** What starts a {@link chunkSetToken}; chunk ids are ULIDs (upper case), so none starts so. */
const CHUNK_SET_PREFIX = 'all-';

/**
 * One item that stands for a whole set of chunk ids in a FETCH's `chunks`:
 * `all-<count>-<digest>`, the digest being 128 bits of SHA-256 over the sorted ids. A narrow
 * read asks each worker for every chunk it holds: at 1,000,000 rows that was a list of 500
 * ids (13 KB) per FETCH, written, published, parsed and checked on every read.
 */
export function chunkSetToken(ids: Iterable<string>): string {
  const sorted = [...ids].sort();
  const digest = createHash('sha256').update(sorted.join(',')).digest('hex').slice(0, 32);
  return `${CHUNK_SET_PREFIX}${sorted.length}-${digest}`;
}

/** The {@link chunkSetToken} a FETCH's `chunks` holds instead of a list, if it does. */
export function chunkSetOf(chunks: readonly string[]): string | undefined {
  return chunks.length === 1 && chunks[0].startsWith(CHUNK_SET_PREFIX) ? chunks[0] : undefined;
}

/**
 * Why a worker did not answer a FETCH with rows. `missing`: it does not hold (committed)
 * some chunks it was asked for (listed in `missing`); the coordinator asks another replica.
 * `no-snapshot`: it holds no snapshot of the backup the FETCH names (it restarted since the cut).
 * `unlisted`: asked by {@link chunkSetToken}, it holds another set (a POST committed or a chunk
 * copied since the read began); the coordinator asks it again with the list.
 */
export const FETCH_ERROR_CODES = [
  'not-ready',
  'lagging',
  'bad-request',
  'failed',
  'missing',
  'no-snapshot',
  'unlisted',
] as const;
export type FetchErrorCode = (typeof FETCH_ERROR_CODES)[number];

/**
 * worker → coordinator reply stream: one batch of a worker's answer to a FETCH.
 * `rows` holds `count` lines of JSON, joined by line feeds: objects (mode `rows`),
 * `[sortKey…, _id]` arrays, a tab and the row (mode `sorted`, keys as SQLite compared them) or
 * `{g: [...], a: [...]}` partial aggregates (mode `agg`). It travels as one string that a
 * plain read hands to its client as it is (no split, per-row check or join on the way:
 * JSON text holds no raw line break). {@link respRows} splits it where lines are needed.
 * The last batch has `done`.
 *
 * Accounting: a batch's `chunks` names chunks it completes, each one asked and named once
 * over the answer; the last batch completes every chunk asked that no batch named (a short
 * answer does not echo the list back). The coordinator checks this, so a chunk is never
 * answered twice, nor one answered that was not asked.
 */
export class FetchRespMessage extends Message {
  static readonly type = 'FETCH_RESP';
  static readonly codec: Record<string, FieldKind> = {
    req: 'string',
    worker: 'string',
    seq: 'int',
    mode: 'string',
    count: 'int',
    chunks: 'list',
    missing: 'list',
    rows: 'text',
    done: 'bool',
    code: 'string',
    error: 'string',
  };
  readonly type = FetchRespMessage.type;
  @IsId() req!: string;
  @IsName() worker!: string;
  @IsInt() @Min(0) seq!: number;
  @IsIn(FETCH_MODES) mode!: FetchMode;
  @IsInt() @Min(0) count!: number;
  /**
   * Chunks whose rows are complete with this batch. Mode `rows` cuts batches only between
   * chunks, so after a failure the coordinator re-asks exactly the chunks not yet answered;
   * the last batch completes every chunk asked that no batch named, without naming them.
   */
  @IsOptional() @IsIdList() chunks?: string[];
  /** With code `missing`: the chunks asked that this worker does not hold committed. */
  @IsOptional() @IsIdList() missing?: string[];
  @IsString() rows!: string;
  @IsBoolean() done!: boolean;
  @IsOptional() @IsIn(FETCH_ERROR_CODES) code?: FetchErrorCode;
  @IsOptional() @IsString() @MaxLength(2000) error?: string;
}

/** The lines of a FETCH_RESP batch's `rows` (none for `''`). */
export function respRows(m: Pick<FetchRespMessage, 'rows'>): string[] {
  return m.rows === '' ? [] : m.rows.split('\n');
}

/**
 * worker → coordinator reply stream: one batch of digests answering a DIGEST, one
 * {@link ChunkDigestLine} (JSON) a line; `chunks` names the chunks of the batch, so the
 * answer is checked like a FETCH's: exactly the chunks asked, each once. The last has `done`.
 */
export class DigestRespMessage extends Message {
  static readonly type = 'DIGEST_RESP';
  static readonly codec: Record<string, FieldKind> = {
    req: 'string',
    worker: 'string',
    seq: 'int',
    chunks: 'list',
    digests: 'lines',
    done: 'bool',
    code: 'string',
    error: 'string',
  };
  readonly type = DigestRespMessage.type;
  @IsId() req!: string;
  @IsName() worker!: string;
  @IsInt() @Min(0) seq!: number;
  @IsOptional() @IsIdList() chunks?: string[];
  @IsArray() @IsString({ each: true }) digests!: string[];
  @IsBoolean() done!: boolean;
  @IsOptional() @IsIn(FETCH_ERROR_CODES) code?: FetchErrorCode;
  @IsOptional() @IsString() @MaxLength(2000) error?: string;
}
