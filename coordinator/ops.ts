import { ulid } from 'ulid';
import type { Keys } from '../common/keys';
import type { Message, OpAckMessage } from '../common/messages';
import type { DstoreRedis } from '../common/redis';
import type { ReplyRouter } from './reply-router';

/**
 * Test-only fault injection, per coordinator (`DSTORE_FAILPOINT_SEND_JITTER_MS`): each XADD of
 * an op to a worker's stream is delayed by a random 0..`sendJitterMs` ms, as a slow link to
 * one Redis node would.
 */
export interface Failpoints {
  sendJitterMs: number;
  /** Exit (137) after the N-th UPDATE/DELETE of a table with changes on was sent (coordinator/mutations.ts). */
  exitAfterSend?: number;
}

/** Where writes to worker streams go: the connection, the key builder, and the failpoints. */
export interface StreamWriter {
  cmd: DstoreRedis;
  keys: Keys;
  failpoints?: Failpoints;
}

/** What came back for an op sent to several workers. */
export interface OpOutcome {
  op: string;
  acks: Map<string, OpAckMessage>;
  /** Workers waited for that did not answer in time. */
  missing: string[];
  /** Every worker the op was XADDed to; those not in `acks` have it queued (see MutationResult.pendingWorkers). */
  sentTo: string[];
}

/** How often a waiting op asks whether the workers it waits for are still live. */
const LIVENESS_POLL_MS = 500;

/**
 * Sends one op (same op id) to the ops stream of each worker in `to`, then waits up to
 * `timeoutMs` for the OP_ACK of each worker in `waitFor` (usually the live ones: a
 * worker that is down applies the op from its stream when it comes back). `hooks.joined`,
 * when given, is asked once after those XADDs for workers that appeared since `to` was
 * read; they get the op too. `hooks.sent` runs once every XADD is done, before the wait
 * (see {@link broadcastToAll}). `hooks.ordered`, when given, wraps those XADDs (the
 * write-order lock, coordinator/order-lock.ts). `hooks.live`, when given, is asked every
 * {@link LIVENESS_POLL_MS} during the wait: a worker that stopped being live (killed after
 * the op was sent) is no longer waited for, so the op does not wait out the timeout.
 */
export async function broadcastOp(
  writer: StreamWriter,
  router: ReplyRouter,
  to: readonly string[],
  waitFor: readonly string[],
  make: (op: string) => Message,
  timeoutMs: number,
  hooks: {
    joined?: () => Promise<string[]>;
    sent?: () => Promise<void>;
    live?: () => Promise<string[]>;
    ordered?: (send: () => Promise<void>, op: string, msg: Message) => Promise<void>;
  } = {},
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
    const args = msg.toArgs();
    const sentTo = [...to];
    const send = async () => {
      await xaddEach(writer, to, args);
      const late = hooks.joined ? (await hooks.joined()).filter((w) => !to.includes(w)) : [];
      await xaddEach(writer, late, args);
      sentTo.push(...late);
    };
    await (hooks.ordered ? hooks.ordered(send, op, msg) : send());
    await hooks.sent?.();
    if (waiting.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      let poll: NodeJS.Timeout | undefined;
      if (hooks.live) {
        const check = hooks.live;
        poll = setInterval(() => {
          check()
            .then((live) => {
              for (const w of waiting) {
                if (live.includes(w)) continue;
                // Like a worker down when the op was sent: it applies the op when it is back.
                waiting.delete(w);
              }
              if (waiting.size === 0) wake();
            })
            .catch(() => undefined); // the next poll or the timeout decides
        }, LIVENESS_POLL_MS);
      }
      await Promise.race([allIn, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
      clearInterval(poll);
    }
    return { op, acks, missing: [...waiting], sentTo };
  } finally {
    unlisten();
  }
}

/**
 * XADDs one op's fields to the ops stream of each worker, one command per stream: on a
 * cluster the workers' streams live on different nodes.
 */
export async function xaddEach(
  writer: StreamWriter,
  workers: readonly string[],
  args: readonly (string | Buffer)[],
): Promise<void> {
  const jitter = writer.failpoints?.sendJitterMs ?? 0;
  await Promise.all(
    workers.map(async (w) => {
      if (jitter > 0) await new Promise((r) => setTimeout(r, Math.random() * jitter));
      await writer.cmd.xadd(writer.keys.workerOps(w), '*', ...args);
    }),
  );
}

/**
 * Rows changed by an UPDATE/DELETE counted once per chunk, however many replicas reported
 * it (the largest count wins should replicas disagree). With `holders`, only the counts of a
 * chunk's holders are taken (a chunk without holders counts nothing).
 */
export function countOncePerChunk(
  acks: Iterable<OpAckMessage>,
  holders?: (chunk: string) => readonly string[] | undefined,
): number {
  const perChunk = new Map<string, number>();
  for (const a of acks) {
    for (const [chunk, n] of Object.entries(a.counts ?? {})) {
      if (holders && !holders(chunk)?.includes(a.worker)) continue;
      perChunk.set(chunk, Math.max(perChunk.get(chunk) ?? 0, n));
    }
  }
  let total = 0;
  for (const n of perChunk.values()) total += n;
  return total;
}
