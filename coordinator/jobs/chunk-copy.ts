import { ulid } from 'ulid';
import {
  buildRows,
  build,
  CommitMessage,
  DIGEST_EMPTY,
  digestVersion,
  DropChunksMessage,
  PostMessage,
  respRows,
  type ChunkDigestLine,
  type DigestRespMessage,
  type PostAckMessage,
} from '../../common/messages';
import { readTableIndexes } from '../catalogue';
import { timeToMs } from '../../common/redis';
import type { CoordinatorContext } from '../context';
import { FetchRound, type Assignment } from '../fetch-round';
import type { ChunkMeta } from '../placement';

/**
 * Copies and digest comparisons per run of {@link copyVerified}: a mismatch caused by an
 * UPDATE/DELETE in flight during the comparison clears on the next try; one that
 * persists fails the job, which BullMQ retries with backoff.
 */
export const COPY_ATTEMPTS = 4;

/** Reads every row of one chunk from one worker (which must hold it committed). */
export async function copyOut(
  ctx: CoordinatorContext,
  table: string,
  chunk: string,
  source: string,
  timeoutMs: number,
): Promise<string[]> {
  const round = new FetchRound(ctx, table, [{ worker: source, chunks: [chunk] }], { query: {} }, { timeoutMs });
  const lines: string[] = [];
  try {
    await round.publish();
    for (let e = await round.next(); e.kind !== 'end'; e = await round.next())
      if (e.kind === 'batch') lines.push(...respRows(e.resp));
  } finally {
    round.close();
  }
  if (round.failed.size === 0) return lines;
  throw new Error(
    `chunk ${chunk}: copying from ${source} failed: ${[...round.failed.values()].map((f) => f.reason).join('; ')}`,
  );
}

/**
 * Writes a chunk to `targets`, committed, and waits for their acks. With `replace`, each
 * target first drops its copy, in the same MULTI on its stream, so that no read fence can
 * fall between the drop and the new copy. A chunk whose rows were all deleted is copied
 * too, empty: a replica must hold the chunk (a worker that does not hold it answers reads
 * of it `missing`), not merely hold no rows of it.
 */
export async function copyIn(
  ctx: CoordinatorContext,
  meta: ChunkMeta,
  chunk: string,
  replicas: string[],
  targets: string[],
  lines: string[],
  timeoutMs: number,
  replace = false,
): Promise<void> {
  const drop = build(DropChunksMessage, { op: ulid(), chunks: [chunk], replyTo: ctx.replyTo }).toArgs();
  const ids = lines.map((l) => (JSON.parse(l) as { _id: string })._id);
  // The copy carries the table's indexes: a target that never had them builds them first.
  const indexes = await readTableIndexes(ctx, meta.table);
  const post = (lines.length > 0 ? buildRows : build)(PostMessage, {
    chunk,
    post: meta.post,
    table: meta.table,
    replicas,
    replyTo: ctx.replyTo,
    ids,
    rows: lines,
    ...(indexes ? { indexes } : {}),
  }).toArgs();
  const commit = build(CommitMessage, { op: ulid(), post: meta.post, replyTo: ctx.replyTo }).toArgs();
  const acked = new Set<string>();
  let fail: string | undefined;
  let wake: () => void = () => undefined;
  const unlisten = ctx.router.listen('post', meta.post, (m) => {
    const a = m as PostAckMessage;
    if (a.chunk !== chunk || !targets.includes(a.worker)) return;
    if (a.status === 'error') fail = `${a.worker}: ${a.error}`;
    else acked.add(a.worker);
    wake();
  });
  try {
    // One MULTI per target (its stream is one slot on a cluster).
    await Promise.all(
      targets.map((w) => {
        const p = ctx.cmd.multi();
        if (replace) p.xadd(ctx.keys.workerOps(w), '*', ...drop);
        return p
          .xadd(ctx.keys.workerOps(w), '*', ...post)
          .xadd(ctx.keys.workerOps(w), '*', ...commit)
          .exec();
      }),
    );
    const deadline = Date.now() + timeoutMs;
    while (acked.size < targets.length && !fail && Date.now() < deadline) {
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
  } finally {
    unlisten();
  }
  if (fail) throw new Error(`chunk ${chunk}: copy refused by ${fail}`);
  if (acked.size < targets.length)
    throw new Error(
      `chunk ${chunk}: ${targets.filter((t) => !acked.has(t)).join(', ')} did not ack the copy in ${timeoutMs} ms`,
    );
}

/**
 * An UPDATE/DELETE registered this long ago and still not on every stream is taken as
 * abandoned (its coordinator died between the registration and its last XADD).
 */
export const ABANDONED_MUTATION_MS = 30_000;

/**
 * Waits until every UPDATE/DELETE registered in `<prefix>:mutations:inflight` now is on
 * every worker's stream (or abandoned). Throws after `timeoutMs`.
 */
export async function awaitMutationsSent(ctx: CoordinatorContext, timeoutMs: number): Promise<void> {
  const [[, entries], [, time]] = (await ctx.cmd
    .multi()
    .zrange(ctx.keys.mutationsInflight, 0, -1, 'WITHSCORES')
    .time()
    .exec()) as [[null, string[]], [null, [string, string]]];
  const now = timeToMs(time);
  let waiting: string[] = [];
  for (let i = 0; i < entries.length; i += 2)
    if (Number(entries[i + 1]) > now - ABANDONED_MUTATION_MS) waiting.push(entries[i]);
  if (entries.length / 2 > waiting.length)
    await ctx.cmd.zremrangebyscore(ctx.keys.mutationsInflight, '-inf', now - ABANDONED_MUTATION_MS);
  const deadline = Date.now() + timeoutMs;
  while (waiting.length > 0) {
    if (Date.now() > deadline)
      throw new Error(
        `${waiting.length} UPDATE/DELETE still being sent after ${timeoutMs} ms (${waiting.slice(0, 3).join(', ')}); will retry`,
      );
    await new Promise((r) => setTimeout(r, 5));
    const scores = await ctx.cmd.zmscore(ctx.keys.mutationsInflight, ...waiting);
    waiting = waiting.filter((_, i) => scores[i] !== null);
  }
}

/**
 * Digests of chunks from the workers asked, in ONE digest FETCH round: every worker answers
 * after its read fence for this round, so each digest reflects every write XADDed to its
 * stream before the round began. Returns chunk → worker → its line, and the workers that
 * did not answer, with why.
 */
export async function collectDigests(
  ctx: CoordinatorContext,
  table: string,
  asks: readonly Assignment[],
  timeoutMs: number,
): Promise<{ digests: Map<string, Map<string, ChunkDigestLine>>; failed: Map<string, string> }> {
  const round = new FetchRound<DigestRespMessage>(ctx, table, asks, { digest: true }, { timeoutMs });
  const digests = new Map<string, Map<string, ChunkDigestLine>>();
  try {
    await round.publish();
    for (let e = await round.next(); e.kind !== 'end'; e = await round.next()) {
      if (e.kind !== 'batch') continue;
      for (const line of e.resp.digests) {
        const d = JSON.parse(line) as ChunkDigestLine;
        const m = digests.get(d.chunk) ?? new Map<string, ChunkDigestLine>();
        m.set(e.resp.worker, d);
        digests.set(d.chunk, m);
      }
    }
  } finally {
    round.close();
  }
  return { digests, failed: new Map([...round.failed].map(([w, f]) => [w, f.reason])) };
}

/**
 * Digests of one chunk from several workers in one round (see {@link collectDigests}); throws when a worker does not
 * answer.
 */
export async function chunkDigests(
  ctx: CoordinatorContext,
  table: string,
  chunk: string,
  workers: string[],
  timeoutMs: number,
): Promise<Map<string, ChunkDigestLine>> {
  const { digests, failed } = await collectDigests(
    ctx,
    table,
    workers.map((worker) => ({ worker, chunks: [chunk] })),
    timeoutMs,
  );
  if (failed.size > 0)
    throw new Error(`chunk ${chunk}: comparing copies failed: ${[...failed].map(([w, r]) => `${w}: ${r}`).join('; ')}`);
  const out = digests.get(chunk) ?? new Map<string, ChunkDigestLine>();
  for (const w of workers) if (!out.has(w)) throw new Error(`chunk ${chunk}: ${w} sent no digest; will retry`);
  return out;
}

/** Options of {@link copyVerified}. */
export interface CopyOptions {
  /** Replace the targets' copies from the first attempt on (scrub's rebuilds). @defaultValue false */
  replace?: boolean;
  /** The source's digest as last seen (scrub): lets an empty source empty a target's copy. */
  sourceDigest?: string;
}

/** What {@link copyVerified} did. */
export interface CopyResult {
  /** Rows in the last copy. */
  rows: number;
  /** Copies made (1 when the first one matched). */
  attempts: number;
}

/**
 * Copies a chunk from `source` to `targets` and returns only once every target's copy is
 * known to equal the source's: after the targets acked, ONE digest FETCH asks the source
 * and the targets at once; a target that differs gets the chunk again, replacing its copy
 * (drop + post + commit in one MULTI), up to {@link COPY_ATTEMPTS} times; then it throws.
 *
 * Why (docs/architecture.md, "Copies are verified"): an UPDATE or DELETE that a target
 * applies before the copy arrives changes nothing there, and is lost if the copy was read
 * from the source before the source applied it. The digest FETCH's fence makes both sides
 * reflect every mutation XADDed before it; every later one reaches the target's stream
 * after the copy. Callers switch a copy in (make it a replica that answers) only after this.
 *
 * `copyList` is the replica list the copy carries: callers pass one without the targets, so
 * an unverified copy never answers a read.
 */
export async function copyVerified(
  ctx: CoordinatorContext,
  meta: ChunkMeta,
  chunk: string,
  source: string,
  targets: string[],
  copyList: string[],
  timeoutMs: number,
  opts: CopyOptions = {},
): Promise<CopyResult> {
  let pending = [...targets];
  let replace = opts.replace ?? false;
  let lastSource = opts.sourceDigest;
  for (let attempt = 1; ; attempt++) {
    const lines = await copyOut(ctx, meta.table, chunk, source, timeoutMs);
    // No rows read from a source last seen holding rows: it no longer holds the chunk.
    // Replacing the targets' copies with nothing would lose them.
    if (lines.length === 0 && replace && lastSource !== DIGEST_EMPTY) {
      throw new Error(`chunk ${chunk}: ${source} sent no rows but held ${lastSource}; will retry`);
    }
    await copyIn(ctx, meta, chunk, copyList, pending, lines, timeoutMs, replace);
    // A mutation begun before the copy reached the target may have gone to the target
    // (before the copy: lost there) but not yet to the source: once it is on every
    // stream, the digest FETCH's fence makes the source reflect it, and the digests differ.
    await awaitMutationsSent(ctx, timeoutMs);
    const digests = await chunkDigests(ctx, meta.table, chunk, [source, ...pending], timeoutMs);
    const src = digests.get(source)!;
    if (src.actual === undefined)
      throw new Error(`chunk ${chunk}: source ${source} cannot be compared: ${src.error ?? 'no digest'}; will retry`);
    // A target that does not hold the chunk differs even from an empty source: reads ask it.
    const actual = (d: ChunkDigestLine) => d.actual;
    const versions = new Set(
      [src.actual, ...pending.map((t) => actual(digests.get(t)!))].flatMap((a) => (a ? [digestVersion(a)] : [])),
    );
    if (versions.size > 1)
      throw new Error(
        `chunk ${chunk}: ${source} and ${pending.join(', ')} compute digests of different versions (${[...versions].join(', ')}): a worker runs an older dstore; will retry`,
      );
    const differ = pending.filter((t) => actual(digests.get(t)!) !== src.actual);
    if (differ.length === 0) return { rows: lines.length, attempts: attempt };
    const seen = Object.fromEntries(differ.map((t) => [t, actual(digests.get(t)!) ?? digests.get(t)!.error]));
    if (attempt >= COPY_ATTEMPTS) {
      throw new Error(
        `chunk ${chunk}: copies on ${differ.join(', ')} still differ from ${source} (${src.actual} vs ${JSON.stringify(seen)}) after ${attempt} attempts; will retry`,
      );
    }
    ctx.log.info(
      { chunk, source, digest: src.actual, differ: seen, attempt },
      'chunk copy differs from its source (a write raced it); copying again',
    );
    pending = differ;
    replace = true;
    lastSource = src.actual;
  }
}
