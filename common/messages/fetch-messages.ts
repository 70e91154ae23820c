import { ArrayMinSize, IsArray, IsBoolean, IsIn, IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min } from 'class-validator';
import { Message, type FieldKind } from './codec';
import { IsId, IsName, IsStreamKey, IsWorkerList } from './common-rules';
import { ID_PATTERN } from '../names';
import type { AggregateSpec, SortSpec } from '../query';

/**
 * coordinator → all workers, on the fetch channel: a scatter-gather read. Only the
 * workers in `live` answer; each answers for the chunks where it is the first member
 * of the chunk's replica list that is in `live`.
 */
export class FetchMessage extends Message {
  static readonly type = 'FETCH';
  static readonly codec: Record<string, FieldKind> = {
    req: 'string',
    replyTo: 'string',
    table: 'string',
    live: 'list',
    where: 'json',
    fields: 'json',
    sort: 'json',
    limit: 'int',
    aggregate: 'json',
    groupBy: 'json',
    chunks: 'list',
    digest: 'bool',
    gen: 'string',
    tails: 'list',
    window: 'int',
    timeoutMs: 'int',
  };
  readonly type = FetchMessage.type;
  @IsId() req!: string;
  @IsStreamKey() replyTo!: string;
  @IsName() table!: string;
  @IsWorkerList() @ArrayMinSize(1) live!: string[];
  @IsOptional() where?: unknown;
  @IsOptional() @IsArray() fields?: string[];
  @IsOptional() @IsArray() sort?: SortSpec[];
  @IsOptional() @IsInt() @Min(0) limit?: number;
  @IsOptional() @IsArray() aggregate?: AggregateSpec[];
  @IsOptional() @IsArray() groupBy?: string[];
  /**
   * A retry: answer only these chunks (still only those where this worker is the
   * first live replica). Absent: every committed chunk of the table.
   */
  @IsOptional() @IsArray() @Matches(ID_PATTERN, { each: true }) chunks?: string[];
  /**
   * Scrub: instead of rows, answer `{"c": chunk, "s": stored digest, "a": actual digest}`
   * (or `"e": error`) for each of `chunks` this worker holds, first live replica or not.
   */
  @IsOptional() @IsBoolean() digest?: boolean;
  /**
   * The read's generation: the last id of `<prefix>:moves` when it was published. A
   * worker picks, per chunk, the replica list in force at that generation, so every
   * holder agrees on who answers a chunk that is being moved. Absent: the newest lists.
   */
  @IsOptional() @Matches(/^\d{1,20}-\d{1,20}$/) gen?: string;
  /**
   * The last id of each `live` worker's ops stream (same order, `0-0` for an empty one),
   * read by the coordinator just before publishing: the worker waits until it has applied
   * up to its entry instead of reading its stream's tail itself. Absent: it reads it.
   */
  @IsOptional() @IsArray() @Matches(/^\d{1,20}-\d{1,20}$/, { each: true }) tails?: string[];
  /**
   * Flow control: the worker sends batches `seq < window` and then waits for credit on
   * the credit channel (`<req> <worker> <n>`: it may send `seq < n`; `n = -1`: the read is
   * over, stop). Absent: no waiting.
   */
  @IsOptional() @IsInt() @Min(1) window?: number;
  /** How long the coordinator waits; a worker gives up waiting to catch up before that. */
  @IsInt() @Min(1) @Max(3_600_000) timeoutMs!: number;
}

/** The digest of a chunk with no rows (`<rows>:<sum>`, see worker/chunk-digest.ts). */
export const DIGEST_EMPTY = '0:0000000000000000';

/** The `e` of a digest answer for a chunk the worker does not hold. */
export const DIGEST_NOT_HELD = 'not held';

/** What a FETCH_RESP batch carries. */
export const FETCH_MODES = ['rows', 'sorted', 'agg'] as const;
export type FetchMode = (typeof FETCH_MODES)[number];

/** Why a worker did not answer a FETCH with rows. */
export const FETCH_ERROR_CODES = ['not-ready', 'lagging', 'bad-request', 'failed', 'stale'] as const;

/**
 * worker → coordinator reply stream: one batch of a worker's answer to a FETCH.
 * `rows` lines are JSON: objects (mode `rows`), `[sortKey…, _id, row]` arrays (mode
 * `sorted`, keys as SQLite compared them), or `{g: [...], a: [...]}` partial
 * aggregates (mode `agg`). The last batch has `done`.
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
    rows: 'lines',
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
   * Mode `rows`: the chunks whose rows this batch completes. Batches never split a
   * chunk, so after a failure the coordinator re-asks for exactly the chunks it lacks.
   */
  @IsOptional() @IsArray() chunks?: string[];
  @IsArray() @IsString({ each: true }) rows!: string[];
  @IsBoolean() done!: boolean;
  @IsOptional() @IsIn(FETCH_ERROR_CODES) code?: (typeof FETCH_ERROR_CODES)[number];
  @IsOptional() @IsString() @MaxLength(2000) error?: string;
}
