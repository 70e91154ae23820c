/**
 * Errors the HTTP API turns into a status and a JSON body `{error, message, …details}`.
 * `error` is a stable code for scripts; `message` says what is wrong and what to do.
 */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string, details?: Record<string, unknown>) =>
  new ApiError(400, 'bad_request', message, details);
export const notFound = (message: string) => new ApiError(404, 'not_found', message);
export const conflict = (message: string, details?: Record<string, unknown>) =>
  new ApiError(409, 'conflict', message, details);
export const unavailable = (message: string, details?: Record<string, unknown>) =>
  new ApiError(503, 'unavailable', message, details);
export const timeout = (message: string, details?: Record<string, unknown>) =>
  new ApiError(504, 'timeout', message, details);

/**
 * An error from Redis itself that a client can act on, as an {@link ApiError}; undefined for
 * any other error. Redis names the condition by the first word of its error reply (`OOM`:
 * used memory is over `maxmemory`, so it refuses writes).
 */
export function fromRedisError(e: unknown): ApiError | undefined {
  const message = (e as { message?: unknown })?.message;
  if (typeof message !== 'string') return undefined;
  if (lostConnection(e as Error))
    return new ApiError(
      503,
      'redis_unavailable',
      `the connection to Redis dropped during the request (${message.trim()}), so whether it took effect is unknown: retry once Redis answers (GET /healthz); a POST retried with the same _ids answers 409 duplicate _id if the first attempt was stored`,
      { retryAfterSeconds: 1 },
    );
  if (!message.startsWith('OOM ')) return undefined;
  return new ApiError(
    503,
    'redis_full',
    `Redis is at its maxmemory and refuses writes (${message.trim()}); nothing of this request was changed. Raise maxmemory or add Redis Cluster masters: the _id index of each table holds most of Redis' memory (GET /status shows redis memory; docs/scaling.md)`,
    { setting: 'maxmemory' },
  );
}

/**
 * Whether ioredis failed a command because its connection went away (a Redis restart or
 * failover) rather than because Redis refused it: the library's own error classes, and the
 * plain errors it raises for a closed connection.
 */
function lostConnection(e: Error): boolean {
  return (
    e.name === 'AbortError' ||
    e.name === 'MaxRetriesPerRequestError' ||
    e.name === 'ClusterAllFailedError' ||
    e.message === 'Connection is closed.' ||
    e.message.startsWith("Stream isn't writeable")
  );
}

/**
 * The last line of an NDJSON answer that failed after rows had left (its status was sent):
 * `{"_error": {error, message, …details}}`, newline included.
 */
export function errorLine(e: unknown): string {
  const known = e instanceof ApiError ? e : fromRedisError(e);
  const err = known
    ? { error: known.code, message: known.message, ...known.details }
    : { error: 'internal', message: (e as Error).message };
  return JSON.stringify({ _error: err }) + '\n';
}
