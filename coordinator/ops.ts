import { ulid } from 'ulid';
import type { Keys } from '../common/keys';
import type { Message, OpAckMessage } from '../common/messages';
import type { DstoreRedis } from '../common/redis';
import type { ReplyRouter } from './reply-router';

/** What came back for an op sent to several workers. */
export interface OpOutcome {
  op: string;
  acks: Map<string, OpAckMessage>;
  /** Workers waited for that did not answer in time. */
  missing: string[];
}

/**
 * Sends one op (same op id) to the ops stream of each worker in `to`, then waits up to
 * `timeoutMs` for the OP_ACK of each worker in `waitFor` (usually the live ones: a
 * worker that is down applies the op from its stream when it comes back).
 */
export async function broadcastOp(
  cmd: DstoreRedis,
  keys: Keys,
  router: ReplyRouter,
  to: readonly string[],
  waitFor: readonly string[],
  make: (op: string) => Message,
  timeoutMs: number,
): Promise<OpOutcome> {
  const op = ulid();
  const msg = make(op);
  const acks = new Map<string, OpAckMessage>();
  const waiting = new Set(waitFor.filter((w) => to.includes(w)));
  let wake: () => void = () => undefined;
  const allIn = new Promise<void>((resolve) => (wake = resolve));
  const unlisten = router.listen('op', op, (m) => {
    if (m.type !== 'OP_ACK') return;
    acks.set(m.worker, m);
    waiting.delete(m.worker);
    if (waiting.size === 0) wake();
  });
  try {
    if (to.length > 0) {
      const p = cmd.pipeline();
      const args = msg.toArgs();
      for (const w of to) p.xadd(keys.workerOps(w), '*', ...args);
      await p.exec();
    }
    if (waiting.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([allIn, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
    }
    return { op, acks, missing: [...waiting] };
  } finally {
    unlisten();
  }
}

/**
 * Rows changed by an UPDATE/DELETE counted once per chunk, however many replicas
 * reported it (the largest count wins should replicas disagree).
 */
export function countOncePerChunk(acks: Iterable<OpAckMessage>): number {
  const perChunk = new Map<string, number>();
  for (const a of acks) {
    for (const [chunk, n] of Object.entries(a.counts ?? {})) perChunk.set(chunk, Math.max(perChunk.get(chunk) ?? 0, n));
  }
  let total = 0;
  for (const n of perChunk.values()) total += n;
  return total;
}
