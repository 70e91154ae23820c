import { ulid } from 'ulid';
import type { Keys } from '../common/keys';
import type { DstoreRedis } from '../common/redis';
import { resumePendingCommit, type CommitContext } from './commit-send';
import { SCRIPT_CODES, ScriptError, scriptResult } from '../common/script-codes';

/**
 * How long a write-order lock is held at most. The holder only XADDs one op to a few
 * streams (milliseconds); the lease matters only when it dies holding the lock, and then
 * bounds how long other writers to the table wait.
 */
export const ORDER_LEASE_MS = 10_000;

/** Longest a writer waits for the lock: two leases, so a dead holder's lock has expired. */
const ORDER_WAIT_MS = 2 * ORDER_LEASE_MS;

/** Releases a lock taken by {@link takeOrderLock}; resolves false when the lease had expired. */
export type ReleaseOrderLock = (() => Promise<boolean>) & {
  /** Extends the lease (while a long send goes on); resolves false when it was lost. */
  renew: () => Promise<boolean>;
  /** A POST whose commit a previous holder left half sent (commit-send.ts), read with the lock. */
  pending?: string;
};

/**
 * Takes the write-order lock of `table` (`{<prefix>}:order:<table>`). Each op that must
 * reach every replica of the table's chunks in the same order — UPDATE, DELETE and a
 * POST's COMMIT — is XADDed to all its streams while holding it, so any two such ops are
 * on every stream in one order, on a single Redis and across Redis Cluster nodes alike.
 * Without it two coordinators' XADDs can interleave differently on two streams and two
 * replicas apply non-commuting ops in different orders.
 *
 * Resolves the release function, or undefined when the lock could not be had within
 * two leases (a holder that stalled longer than its lease; the caller decides).
 */
export async function takeOrderLock(
  cmd: DstoreRedis,
  keys: Keys,
  table: string,
): Promise<ReleaseOrderLock | undefined> {
  const key = keys.orderLock(table);
  const token = ulid();
  const deadline = Date.now() + ORDER_WAIT_MS;
  for (let pause = 1; ; pause = Math.min(pause * 2, 20)) {
    // The pending record in the same round trip (same slot): every ordered write needs it.
    const [taken, pending] = (await cmd
      .pipeline()
      .set(key, token, 'PX', ORDER_LEASE_MS, 'NX')
      .get(keys.orderPending(table))
      .exec())!.map(([err, v]) => {
      if (err) throw err;
      return v as string | null;
    });
    if (taken === 'OK') {
      const ours = async (reply: Promise<number>, script: string) => {
        try {
          return scriptResult(script, await reply) === 1;
        } catch (e) {
          if (e instanceof ScriptError && e.code === SCRIPT_CODES.LOCK_NOT_HELD) return false;
          throw e;
        }
      };
      return Object.assign(() => ours(cmd.releaseLock(key, token), 'release-lock-1.lua'), {
        renew: () => ours(cmd.renewLock(key, token, ORDER_LEASE_MS), 'renew-lock-1.lua'),
        ...(pending ? { pending } : {}),
      });
    }
    if (Date.now() + pause > deadline) return undefined;
    await new Promise((r) => setTimeout(r, pause));
  }
}

/**
 * Runs `send` (the XADDs of one op) under the write-order lock of `table`; see
 * {@link takeOrderLock}. First, a POST's commit that a previous holder left half sent is sent
 * again (commit-send.ts), so it stays ordered before this op on every stream. The lease is
 * renewed while `send` runs (a commit of many upserted rows takes longer than one lease).
 */
export async function inWriteOrder<T>(
  ctx: CommitContext,
  table: string,
  what: string,
  send: () => Promise<T>,
  onTimeout: 'fail' | 'proceed',
): Promise<T> {
  const release = await takeOrderLock(ctx.cmd, ctx.keys, table);
  if (!release) {
    if (onTimeout === 'fail') throw new OrderLockTimeout(table);
    ctx.log.warn(
      { table, what },
      `write-order lock of ${table} not had within ${ORDER_WAIT_MS} ms; sending ${what} without it (replicas may apply it in another order than a concurrent write)`,
    );
    return send();
  }
  const renew = setInterval(() => void release.renew().catch(() => false), ORDER_LEASE_MS / 3);
  try {
    if (release.pending) await resumePendingCommit(ctx, table, release.pending);
    return await send();
  } finally {
    clearInterval(renew);
    const ours = await release().catch(() => false);
    if (!ours)
      ctx.log.warn(
        { table, what },
        `write-order lock of ${table} expired while ${what} was being sent; a concurrent write may be ordered differently on some replica`,
      );
  }
}

/** The write-order lock could not be had (see {@link takeOrderLock}). */
export class OrderLockTimeout extends Error {
  constructor(readonly table: string) {
    super(
      `the write-order lock of table ${table} was held by another coordinator for over ${ORDER_WAIT_MS} ms; nothing was sent, retry the request`,
    );
  }
}
