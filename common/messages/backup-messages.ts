import { IsInt, Max, Min } from 'class-validator';
import { Message, type FieldKind } from './codec';
import { IsId, IsStreamKey } from './common-rules';

/**
 * coordinator → every worker's ops stream, XADDed while the backup holds every table's
 * write-order lock: the backup's cut. A worker applying it keeps a read snapshot of its
 * shard as of this entry (every entry before it applied, none after), and answers the
 * backup's FETCHes (`snapshot: <backup>`) from it until BACKUP_END or until it was not
 * read for `idleMs`.
 */
export class BackupMessage extends Message {
  static readonly type = 'BACKUP';
  static readonly codec: Record<string, FieldKind> = {
    op: 'string',
    backup: 'string',
    idleMs: 'int',
    replyTo: 'string',
  };
  readonly type = BackupMessage.type;
  @IsId() op!: string;
  @IsId() backup!: string;
  /** A snapshot not read for this long is let go (a backup whose client died). */
  @IsInt() @Min(1000) @Max(86_400_000) idleMs!: number;
  @IsStreamKey() replyTo!: string;
}

/** coordinator → every worker's ops stream: the backup is over; let its snapshot go. */
export class BackupEndMessage extends Message {
  static readonly type = 'BACKUP_END';
  static readonly codec: Record<string, FieldKind> = { op: 'string', backup: 'string', replyTo: 'string' };
  readonly type = BackupEndMessage.type;
  @IsId() op!: string;
  @IsId() backup!: string;
  @IsStreamKey() replyTo!: string;
}
