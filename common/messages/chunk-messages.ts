import { ArrayMinSize, IsArray, IsOptional, Matches } from 'class-validator';
import { ID_PATTERN } from '../names';
import { Message, type FieldKind } from './codec';
import { IsId, IsStreamKey, IsWorkerList } from './common-rules';

/** A Redis stream id (`<ms>-<seq>`): a position in `<prefix>:moves`. */
const STREAM_ID = /^\d{1,20}-\d{1,20}$/;

/**
 * repair → a worker that lost chunks to re-homing: drop them. Sent to a lost worker's
 * stream, so it applies this before it answers reads again when it comes back. A move
 * (drain, rebalance) also sends it to the worker the chunk left, with `minGen`: the
 * move's position in `<prefix>:moves`; from then on the worker refuses (`stale`) a FETCH
 * of an older generation, which might still count on it for the dropped chunk.
 */
export class DropChunksMessage extends Message {
  static readonly type = 'DROP_CHUNKS';
  static readonly codec: Record<string, FieldKind> = { op: 'string', chunks: 'list', minGen: 'string', replyTo: 'string' };
  readonly type = DropChunksMessage.type;
  @IsId() op!: string;
  @IsArray() @ArrayMinSize(1) @Matches(ID_PATTERN, { each: true }) chunks!: string[];
  @IsOptional() @Matches(STREAM_ID) minGen?: string;
  @IsStreamKey() replyTo!: string;
}

/**
 * repair or a move → every holder of a chunk: its replica list changed (decides who
 * answers it). With `since` (a move's id in `<prefix>:moves`), the new list holds for
 * FETCHes of generation `since` or later and the previous one for older FETCHes; a
 * list with a `since` not newer than the one held is ignored (a replay).
 */
export class SetReplicasMessage extends Message {
  static readonly type = 'SET_REPLICAS';
  static readonly codec: Record<string, FieldKind> = { op: 'string', chunk: 'string', replicas: 'list', since: 'string', replyTo: 'string' };
  readonly type = SetReplicasMessage.type;
  @IsId() op!: string;
  @IsId() chunk!: string;
  @IsWorkerList(64) @ArrayMinSize(1) replicas!: string[];
  @IsOptional() @Matches(STREAM_ID) since?: string;
  @IsStreamKey() replyTo!: string;
}
