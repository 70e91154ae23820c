import { IsInt, IsObject, IsOptional, Min } from 'class-validator';
import type { TableIndexes } from '../indexes';
import { Message, type FieldKind } from './codec';
import { IsId, IsName, IsStreamKey } from './common-rules';

/** Column types a table schema may declare. */
export const COLUMN_TYPES = ['string', 'integer', 'number', 'boolean', 'json'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];

/** coordinator → worker ops stream: create (or re-declare) a table on a worker. */
export class SetupTableMessage extends Message {
  static readonly type = 'SETUP_TABLE';
  static readonly codec: Record<string, FieldKind> = {
    op: 'string',
    table: 'string',
    schema: 'json',
    version: 'int',
    indexes: 'json',
    replyTo: 'string',
  };
  readonly type = SetupTableMessage.type;
  @IsId() op!: string;
  @IsName() table!: string;
  /** Column name → type; absent for a schemaless table. */
  @IsOptional() @IsObject() schema?: Record<string, ColumnType>;
  @IsInt() @Min(1) version!: number;
  /** The table's secondary indexes (the whole declared set, versioned); absent: unchanged. */
  @IsOptional() @IsObject() indexes?: TableIndexes;
  @IsStreamKey() replyTo!: string;
}

/** coordinator → worker ops stream: drop a table and all its rows. */
export class DropTableMessage extends Message {
  static readonly type = 'DROP_TABLE';
  static readonly codec: Record<string, FieldKind> = { op: 'string', table: 'string', replyTo: 'string' };
  readonly type = DropTableMessage.type;
  @IsId() op!: string;
  @IsName() table!: string;
  @IsStreamKey() replyTo!: string;
}
