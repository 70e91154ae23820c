import type { Keys } from '../common/keys';
import type { DstoreRedis } from '../common/redis';
import type { OpsConsumer } from './ops-consumer';

/**
 * The read fence: everything in this worker's ops stream when the read began was written
 * before it, so the worker answers only once it has applied its stream that far. The
 * coordinator sends the tail it read after the read began (`tail`); without it the worker
 * reads its stream's tail itself, later, which covers at least as much.
 *
 * Resolves undefined once fenced, or the entry id it could not reach within `waitMs`.
 */
export async function awaitFence(
  deps: { cmd: DstoreRedis; keys: Keys; workerId: string; consumer: OpsConsumer },
  tail: string | undefined,
  waitMs: number,
): Promise<string | undefined> {
  const last = tail ?? (await deps.cmd.xrevrange(deps.keys.workerOps(deps.workerId), '+', '-', 'COUNT', 1))[0]?.[0];
  if (!last || last === '0-0') return undefined;
  return (await deps.consumer.waitApplied(last, waitMs)) ? undefined : last;
}
