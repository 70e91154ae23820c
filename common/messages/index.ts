import { decodeOneOf, type Fields, type MessageClass, type Message } from './codec';
import { SetupTableMessage, DropTableMessage } from './table-messages';
import { PostMessage, PostAckMessage, CommitMessage, AbortMessage } from './post-messages';
import { UpdateMessage, DeleteMessage, UpsertMessage, OpAckMessage } from './op-messages';
import { DigestMessage, DigestRespMessage, FetchCreditMessage, FetchMessage, FetchRespMessage } from './fetch-messages';
import { DropChunksMessage, SetReplicasMessage } from './chunk-messages';
import { BackupEndMessage, BackupMessage } from './backup-messages';

export * from './codec';
export * from './table-messages';
export * from './post-messages';
export * from './op-messages';
export * from './fetch-messages';
export * from './chunk-messages';
export * from './backup-messages';

/** Messages a worker finds on its ops stream. */
export type OpsMessage =
  | SetupTableMessage
  | DropTableMessage
  | PostMessage
  | CommitMessage
  | AbortMessage
  | UpdateMessage
  | DeleteMessage
  | UpsertMessage
  | DropChunksMessage
  | SetReplicasMessage
  | BackupMessage
  | BackupEndMessage;
/** Messages a coordinator finds on its reply stream. */
export type ReplyMessage = PostAckMessage | OpAckMessage | FetchRespMessage | DigestRespMessage;

const OPS: readonly MessageClass<OpsMessage>[] = [
  SetupTableMessage,
  DropTableMessage,
  PostMessage,
  CommitMessage,
  AbortMessage,
  UpdateMessage,
  DeleteMessage,
  UpsertMessage,
  DropChunksMessage,
  SetReplicasMessage,
  BackupMessage,
  BackupEndMessage,
];
const REPLIES: readonly MessageClass<ReplyMessage>[] = [
  PostAckMessage,
  OpAckMessage,
  FetchRespMessage,
  DigestRespMessage,
];

/** Decodes an ops-stream entry; throws MessageError for anything else. */
export function decodeOps(fields: Fields): OpsMessage {
  return decodeOneOf(OPS, fields);
}

/** Decodes a reply-stream entry; throws MessageError for anything else. */
export function decodeReply(fields: Fields): ReplyMessage {
  return decodeOneOf(REPLIES, fields);
}

/** Messages a worker finds on its fetch channel. */
export type FetchChannelMessage = FetchMessage | DigestMessage | FetchCreditMessage;

/** Encodes a FETCH, a DIGEST or a read credit for a worker's fetch channel (a JSON object of its flat fields). */
export function encodeFetch(msg: FetchChannelMessage): string {
  return JSON.stringify(msg.encode());
}

/** Decodes a message from a worker's fetch channel; throws MessageError for anything else. */
export function decodeFetch(payload: string): FetchChannelMessage {
  let fields: unknown;
  try {
    fields = JSON.parse(payload);
  } catch {
    fields = undefined;
  }
  if (!fields || typeof fields !== 'object' || Array.isArray(fields)) {
    return decodeOneOf<FetchChannelMessage>([FetchMessage, DigestMessage, FetchCreditMessage], {
      type: '(not a JSON object)',
    });
  }
  return decodeOneOf<FetchChannelMessage>([FetchMessage, DigestMessage, FetchCreditMessage], fields as Fields);
}

export type { Message };
