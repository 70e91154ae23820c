/**
 * A failed request to dstore: the server's answer (`status`, its stable `code` such as
 * `not_found`, `conflict`, `bad_filter`, `bad_cursor`, `unavailable`, `limit_exceeded`, and the
 * rest of its error body in `details`: `field`, `row`, `limit`, `missingWorkers`, …), or no
 * answer at all (`status` undefined: the coordinator could not be reached).
 */
export class DstoreError extends Error {
  override readonly name: string = 'DstoreError';
  constructor(
    message: string,
    /** HTTP status of the coordinator's answer, when there was one. */
    readonly status?: number,
    /** The API's stable error code, when there was one. */
    readonly code?: string,
    /** The rest of the API's error body. */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** Whether `e` is a {@link DstoreError}, with the given code when one is given. */
export function isDstoreError(e: unknown, code?: string): e is DstoreError {
  return e instanceof DstoreError && (code === undefined || e.code === code);
}
