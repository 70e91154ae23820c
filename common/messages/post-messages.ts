import {
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsObject,
  IsOptional,
  IsString,
  Matches,
  MaxLength,
  Min,
} from 'class-validator';
import { REFUSAL_CODES, type RefusalCode } from '../errors';
import type { TableIndexes } from '../indexes';
import { Message, type FieldKind } from './codec';
import { IsId, IsName, IsStreamKey, IsWorkerList } from './common-rules';

/**
 * coordinator → worker ops stream: one chunk of rows for one table. `ids[i]` is the
 * `_id` of `rows[i]`; each row is one JSON object (NDJSON line) that already holds its
 * `_id`. The replica list travels with the chunk so reads can pick one answer per chunk.
 */
export class PostMessage extends Message {
  static readonly type = 'POST';
  static readonly codec: Record<string, FieldKind> = {
    chunk: 'string',
    post: 'string',
    table: 'string',
    replicas: 'list',
    since: 'string',
    replyTo: 'string',
    ids: 'lines',
    rows: 'lines',
    indexes: 'json',
  };
  readonly type = PostMessage.type;
  @IsId() chunk!: string;
  /** The POST request this chunk belongs to. */
  @IsId() post!: string;
  @IsName() table!: string;
  @IsWorkerList(64) @ArrayMinSize(1) replicas!: string[];
  /**
   * A copy made by a move: the generation (`<prefix>:moves` id) from which `replicas`
   * holds. The copy refuses (`stale`) reads of an older generation. Absent on new chunks.
   */
  @IsOptional() @Matches(/^\d{1,20}-\d{1,20}$/) since?: string;
  @IsStreamKey() replyTo!: string;
  /** Empty only in a copy of a chunk whose rows were all deleted: the copy holds it, empty. */
  @IsArray() @IsString({ each: true }) @MaxLength(512, { each: true }) ids!: string[];
  @IsArray() @IsString({ each: true }) rows!: string[];
  /**
   * The table's secondary indexes as the coordinator knew them: a worker that has not yet
   * applied this version of the set (it was down, or joined after the index was created)
   * builds them before storing the chunk, so every copy of every chunk is covered.
   */
  @IsOptional() @IsObject() indexes?: TableIndexes;
}

/**
 * coordinator → ops stream of every worker that received chunks of a POST: makes them
 * visible to reads. Until then they are stored but never answered.
 */
export class CommitMessage extends Message {
  static readonly type = 'COMMIT';
  static readonly codec: Record<string, FieldKind> = { op: 'string', post: 'string', replyTo: 'string' };
  readonly type = CommitMessage.type;
  @IsId() op!: string;
  @IsId() post!: string;
  @IsStreamKey() replyTo!: string;
}

/** coordinator (or clean-up job) → workers: remove every chunk of a POST that will never commit. */
export class AbortMessage extends Message {
  static readonly type = 'ABORT';
  static readonly codec: Record<string, FieldKind> = { op: 'string', post: 'string', replyTo: 'string' };
  readonly type = AbortMessage.type;
  @IsId() op!: string;
  @IsId() post!: string;
  @IsStreamKey() replyTo!: string;
}

/** worker → coordinator reply stream: a chunk was applied (or refused). */
export class PostAckMessage extends Message {
  static readonly type = 'POST_ACK';
  static readonly codec: Record<string, FieldKind> = {
    chunk: 'string',
    post: 'string',
    worker: 'string',
    status: 'string',
    rows: 'int',
    duplicate: 'bool',
    error: 'string',
    code: 'string',
    row: 'int',
  };
  readonly type = PostAckMessage.type;
  @IsId() chunk!: string;
  @IsId() post!: string;
  @IsName() worker!: string;
  @IsIn(['ok', 'error']) status!: 'ok' | 'error';
  /** Rows the worker holds for this chunk. */
  @IsInt() @Min(0) rows!: number;
  /** True when the chunk had been applied before (a redelivery). */
  @IsBoolean() duplicate!: boolean;
  @IsOptional() @IsString() @MaxLength(2000) error?: string;
  /**
   * Why the chunk was refused (with `status: 'error'`). Absent from workers older than the
   * field: the coordinator then falls back to reading `error`.
   */
  @IsOptional() @IsIn(REFUSAL_CODES) code?: RefusalCode;
  /** The 1-based row of the chunk at fault, when one row is (e.g. the repeated `_id`). */
  @IsOptional() @IsInt() @Min(1) row?: number;
}
