import { ArrayMinSize, IsArray, Matches } from 'class-validator';
import { ID_PATTERN } from '../names';
import { Message, type FieldKind } from './codec';
import { IsId, IsStreamKey, IsWorkerList } from './common-rules';

/**
 * repair → a worker that lost chunks to re-homing: drop them. Sent to a lost worker's
 * stream, so it applies this before it answers reads again when it comes back.
 */
export class DropChunksMessage extends Message {
  static readonly type = 'DROP_CHUNKS';
  static readonly codec: Record<string, FieldKind> = { op: 'string', chunks: 'list', replyTo: 'string' };
  readonly type = DropChunksMessage.type;
  @IsId() op!: string;
  @IsArray() @ArrayMinSize(1) @Matches(ID_PATTERN, { each: true }) chunks!: string[];
  @IsStreamKey() replyTo!: string;
}

/** repair → every holder of a chunk: its replica list changed (decides who answers it). */
export class SetReplicasMessage extends Message {
  static readonly type = 'SET_REPLICAS';
  static readonly codec: Record<string, FieldKind> = { op: 'string', chunk: 'string', replicas: 'list', replyTo: 'string' };
  readonly type = SetReplicasMessage.type;
  @IsId() op!: string;
  @IsId() chunk!: string;
  @IsWorkerList(64) @ArrayMinSize(1) replicas!: string[];
  @IsStreamKey() replyTo!: string;
}
