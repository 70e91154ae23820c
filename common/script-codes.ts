/**
 * The negative codes the Lua scripts in common/lua return when a step cannot be taken, and
 * the one place they become errors (bullmq's `finished-errors` is the model). A script
 * never returns English text for a caller to match: each caller switches on `.code`.
 */
export const SCRIPT_CODES = {
  /** begin-commit, unregister-chunks: the POST has no open record (committed, aborted, or never opened). */
  POST_NOT_OPEN: -1,
  /** unregister-chunks: the POST is being committed; it may no longer be aborted. */
  POST_COMMITTING: -2,
  /** lose-shard: the worker's shard record changed since it was read (another coordinator got there first). */
  RECORD_CHANGED: -3,
  /** release-lock: the lock is no longer held by this token (its lease ended). */
  LOCK_NOT_HELD: -4,
  /** set-placement: a worker the new record adds is draining or retired; it takes no copies. */
  TARGET_UNAVAILABLE: -5,
} as const;

/** One of {@link SCRIPT_CODES}. */
export type ScriptCode = (typeof SCRIPT_CODES)[keyof typeof SCRIPT_CODES];

const MEANING: Record<ScriptCode, string> = {
  [SCRIPT_CODES.POST_NOT_OPEN]: 'the POST is not open (committed, aborted or unknown)',
  [SCRIPT_CODES.POST_COMMITTING]: 'the POST is being committed and cannot be aborted',
  [SCRIPT_CODES.RECORD_CHANGED]: 'the record changed since it was read',
  [SCRIPT_CODES.LOCK_NOT_HELD]: 'the lock is no longer held by this owner (its lease ended)',
  [SCRIPT_CODES.TARGET_UNAVAILABLE]: 'a worker the record would add is draining or retired',
};

/** A script refused its step; `code` says why. */
export class ScriptError extends Error {
  override readonly name = 'ScriptError';
  constructor(
    /** The script, e.g. `begin-commit-1.lua`. */
    readonly script: string,
    readonly code: ScriptCode,
  ) {
    super(`${script}: ${MEANING[code] ?? `code ${code}`}`);
  }
}

/** A script's numeric answer: returned as it is when it is not negative, else thrown as a {@link ScriptError}. */
export function scriptResult(script: string, n: number): number {
  if (n >= 0) return n;
  if (!Object.values(SCRIPT_CODES).includes(n as ScriptCode))
    throw new Error(`${script} returned an unknown code ${n}`);
  throw new ScriptError(script, n as ScriptCode);
}
