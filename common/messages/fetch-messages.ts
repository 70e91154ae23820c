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
  /** How long the coordinator waits; a worker gives up waiting to catch up before that. */
  @IsInt() @Min(1) @Max(3_600_000) timeoutMs!: number;
}

/** What a FETCH_RESP batch carries. */
export const FETCH_MODES = ['rows', 'sorted', 'agg'] as const;
export type FetchMode = (typeof FETCH_MODES)[number];

/** Why a worker did not answer a FETCH with rows. */
export const FETCH_ERROR_CODES = ['not-ready', 'lagging', 'bad-request', 'failed'] as const;

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
