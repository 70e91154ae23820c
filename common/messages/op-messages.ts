import { IsArray, IsDefined, IsIn, IsInt, IsObject, IsOptional, IsString, MaxLength, Min } from 'class-validator';
import { Message, type FieldKind } from './codec';
import { IsId, IsName, IsStreamKey } from './common-rules';

/**
 * coordinator → every worker's ops stream: set fields on the rows matching a filter (and, for a
 * schema change, fill in added columns' defaults and remove dropped columns).
 */
export class UpdateMessage extends Message {
  static readonly type = 'UPDATE';
  static readonly codec: Record<string, FieldKind> = {
    op: 'string',
    table: 'string',
    where: 'json',
    set: 'json',
    fill: 'json',
    unset: 'json',
    replyTo: 'string',
  };
  readonly type = UpdateMessage.type;
  @IsId() op!: string;
  @IsName() table!: string;
  @IsDefined() where!: unknown;
  /** Field (dotted path) → new JSON value. */
  @IsObject() set!: Record<string, unknown>;
  /** Field → value set only where the row has no such field (a column added with a default). */
  @IsOptional() @IsObject() fill?: Record<string, unknown>;
  /** Fields removed from the rows (dropped columns). */
  @IsOptional() @IsArray() @IsString({ each: true }) unset?: string[];
  @IsStreamKey() replyTo!: string;
}

/** coordinator → every worker's ops stream: delete the rows matching a filter. */
export class DeleteMessage extends Message {
  static readonly type = 'DELETE';
  static readonly codec: Record<string, FieldKind> = {
    op: 'string',
    table: 'string',
    where: 'json',
    replyTo: 'string',
  };
  readonly type = DeleteMessage.type;
  @IsId() op!: string;
  @IsName() table!: string;
  @IsDefined() where!: unknown;
  @IsStreamKey() replyTo!: string;
}

/**
 * coordinator → every worker's ops stream, in the table's write order next to the COMMIT of
 * an upsert POST (`?onConflict=replace|merge`): the rows of the POST whose `_id` was already
 * stored. `chunks[i]` is the chunk that held `ids[i]` when the POST checked it; `rows[i]`
 * is the whole new row (`replace`) or the fields to set (`merge`), `_id` first. A worker
 * changes the rows it holds committed; one whose row was deleted meanwhile stores it again
 * in that chunk, so the upsert applies at its place in the write order on every replica.
 */
export class UpsertMessage extends Message {
  static readonly type = 'UPSERT';
  static readonly codec: Record<string, FieldKind> = {
    op: 'string',
    post: 'string',
    table: 'string',
    mode: 'string',
    chunks: 'lines',
    ids: 'lines',
    rows: 'lines',
    defaults: 'json',
    replyTo: 'string',
  };
  readonly type = UpsertMessage.type;
  @IsId() op!: string;
  /** The POST whose COMMIT this travels with. */
  @IsId() post!: string;
  @IsName() table!: string;
  @IsIn(['replace', 'merge']) mode!: 'replace' | 'merge';
  @IsArray() @IsString({ each: true }) @MaxLength(64, { each: true }) chunks!: string[];
  @IsArray() @IsString({ each: true }) @MaxLength(512, { each: true }) ids!: string[];
  @IsArray() @IsString({ each: true }) rows!: string[];
  /** A merge: the defaults of added columns, for a row stored again (it gets them as a new row would). */
  @IsOptional() @IsObject() defaults?: Record<string, unknown>;
  @IsStreamKey() replyTo!: string;
}

/** The ops that answer with an OP_ACK. */
export const OP_KINDS = [
  'SETUP_TABLE',
  'DROP_TABLE',
  'UPDATE',
  'DELETE',
  'UPSERT',
  'COMMIT',
  'ABORT',
  'DROP_CHUNKS',
  'SET_REPLICAS',
  'BACKUP',
  'BACKUP_END',
] as const;

/**
 * worker → coordinator reply stream: an op was applied. `counts` maps chunk id → rows
 * changed in that chunk, so a coordinator counts each chunk once however many
 * replicas hold it.
 */
export class OpAckMessage extends Message {
  static readonly type = 'OP_ACK';
  static readonly codec: Record<string, FieldKind> = {
    op: 'string',
    kind: 'string',
    worker: 'string',
    status: 'string',
    count: 'int',
    counts: 'json',
    error: 'string',
  };
  readonly type = OpAckMessage.type;
  @IsId() op!: string;
  @IsIn(OP_KINDS) kind!: (typeof OP_KINDS)[number];
  @IsName() worker!: string;
  @IsIn(['ok', 'error']) status!: 'ok' | 'error';
  @IsInt() @Min(0) count!: number;
  @IsOptional() @IsObject() counts?: Record<string, number>;
  @IsOptional() @IsString() @MaxLength(2000) error?: string;
}
