/**
 * Error classes that callers branch on. Every message names the thing that is wrong
 * and what to change.
 */

/** A setting read from the environment or a flag has a wrong value. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    /** The environment variable (or flag) at fault. */
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
  }
}

/** A stream or pub/sub message failed to decode or validate; it is never applied. */
export class MessageError extends Error {
  override readonly name = 'MessageError';
  constructor(
    message: string,
    /** The message type as read from the entry, if any. */
    readonly messageType?: string,
  ) {
    super(message);
  }
}

/** A user-supplied name (table, worker id, field) breaks the naming rules. */
export class NameError extends Error {
  override readonly name = 'NameError';
}

/**
 * Why a worker refused an ops entry, as its ack says it (`code` of a POST_ACK), so the
 * coordinator branches on a code and never on the wording:
 * - `duplicate-id`: a row's `_id` is already in the table (the client's repeat: 409);
 * - `bad-input`: the entry is malformed or asks for something invalid (400);
 * - `aborted`: the POST was aborted meanwhile (clean-up judged its coordinator dead; retry);
 * - `storage`: the shard could not be written (SQLite error, disk; retry once it is fixed);
 * - `internal`: anything else (a bug).
 */
export type RefusalCode = 'duplicate-id' | 'bad-input' | 'aborted' | 'storage' | 'internal';

/** Every {@link RefusalCode}, for validation. */
export const REFUSAL_CODES: readonly RefusalCode[] = ['duplicate-id', 'bad-input', 'aborted', 'storage', 'internal'];

/** A write that is valid as a message but cannot be applied (e.g. a duplicate `_id`). */
export class RejectedError extends Error {
  override readonly name = 'RejectedError';
  constructor(
    message: string,
    /** Why, for the ack. @defaultValue 'bad-input' */
    readonly code: RefusalCode = 'bad-input',
    /** The 1-based row of the chunk at fault, when one row is. */
    readonly row?: number,
  ) {
    super(message);
  }
}
