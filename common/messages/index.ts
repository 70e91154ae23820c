import { decodeOneOf, type Fields, type MessageClass, type Message } from './codec';
import { SetupTableMessage, DropTableMessage } from './table-messages';
import { PostMessage, PostAckMessage, CommitMessage, AbortMessage } from './post-messages';
import { UpdateMessage, DeleteMessage, OpAckMessage } from './op-messages';
import { FetchMessage, FetchRespMessage } from './fetch-messages';
import { DropChunksMessage, SetReplicasMessage } from './chunk-messages';

export * from './codec';
export * from './table-messages';
export * from './post-messages';
export * from './op-messages';
export * from './fetch-messages';
export * from './chunk-messages';

/** Messages a worker finds on its ops stream. */
export type OpsMessage =
  | SetupTableMessage
  | DropTableMessage
  | PostMessage
  | CommitMessage
  | AbortMessage
  | UpdateMessage
  | DeleteMessage
  | DropChunksMessage
  | SetReplicasMessage;
/** Messages a coordinator finds on its reply stream. */
export type ReplyMessage = PostAckMessage | OpAckMessage | FetchRespMessage;

const OPS: readonly MessageClass<OpsMessage>[] = [
  SetupTableMessage,
  DropTableMessage,
  PostMessage,
  CommitMessage,
  AbortMessage,
  UpdateMessage,
  DeleteMessage,
  DropChunksMessage,
  SetReplicasMessage,
];
const REPLIES: readonly MessageClass<ReplyMessage>[] = [PostAckMessage, OpAckMessage, FetchRespMessage];

/** Decodes an ops-stream entry; throws MessageError for anything else. */
export function decodeOps(fields: Fields): OpsMessage {
  return decodeOneOf(OPS, fields);
}

/** Decodes a reply-stream entry; throws MessageError for anything else. */
export function decodeReply(fields: Fields): ReplyMessage {
  return decodeOneOf(REPLIES, fields);
}

/** Encodes a FETCH for the pub/sub channel (a JSON object of its flat fields). */
export function encodeFetch(msg: FetchMessage): string {
  return JSON.stringify(msg.encode());
}

/** Decodes a FETCH from the pub/sub channel. */
export function decodeFetch(payload: string): FetchMessage {
  let fields: unknown;
  try {
    fields = JSON.parse(payload);
  } catch {
    fields = undefined;
  }
  if (!fields || typeof fields !== 'object' || Array.isArray(fields)) {
    return decodeOneOf([FetchMessage], { type: '(not a JSON object)' });
  }
  return decodeOneOf([FetchMessage], fields as Fields);
}

export type { Message };
