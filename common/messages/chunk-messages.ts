import { ArrayMinSize } from 'class-validator';
import { Message, type FieldKind } from './codec';
import { IsId, IsIdList, IsStreamKey, IsWorkerList } from './common-rules';

/**
 * repair or a move → a worker that no longer holds chunks (re-homed while it was lost, or
 * moved away): drop them. Sent after the placement record stopped naming the worker, so a
 * read that still asks it for one of them gets `missing` and asks the new holders.
 */
export class DropChunksMessage extends Message {
  static readonly type = 'DROP_CHUNKS';
  static readonly codec: Record<string, FieldKind> = { op: 'string', chunks: 'list', replyTo: 'string' };
  readonly type = DropChunksMessage.type;
  @IsId() op!: string;
  @ArrayMinSize(1) @IsIdList() chunks!: string[];
  @IsStreamKey() replyTo!: string;
}

/**
 * repair or a move → every holder of a chunk: its replica list changed. Kept in the shard
 * for operators and scrub; reads are routed by the coordinator's placement records.
 */
export class SetReplicasMessage extends Message {
  static readonly type = 'SET_REPLICAS';
  static readonly codec: Record<string, FieldKind> = {
    op: 'string',
    chunk: 'string',
    replicas: 'list',
    replyTo: 'string',
  };
  readonly type = SetReplicasMessage.type;
  @IsId() op!: string;
  @IsId() chunk!: string;
  @IsWorkerList(64) @ArrayMinSize(1) replicas!: string[];
  @IsStreamKey() replyTo!: string;
}
