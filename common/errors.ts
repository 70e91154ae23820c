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

/** A write that is valid as a message but cannot be applied (e.g. a duplicate `_id`). */
export class RejectedError extends Error {
  override readonly name = 'RejectedError';
}
