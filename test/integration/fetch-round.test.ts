import { strict as assert } from 'node:assert';
import { makeKeys } from '../../common/keys';
import { createLogger } from '../../common/logger';
import {
  build,
  chunkSetToken,
  decodeFetch,
  FetchRespMessage,
  type FetchErrorCode,
  type FetchMessage,
} from '../../common/messages';
import { createRedis, subscribe, type DstoreRedis } from '../../common/redis';
import type { CoordinatorContext } from '../../coordinator/context';
import { FetchRound, type RoundEvent } from '../../coordinator/fetch-round';
import { ReplyRouter } from '../../coordinator/reply-router';
import { sharedRedis, uniquePrefix } from '../support/redis';

/** How a scripted worker answers: the batches it sends, as (chunks it names, done), or a failure. */
type Script = { chunks?: string[]; done: boolean; code?: FetchErrorCode; missing?: string[] }[];

/**
 * A round's accounting (coordinator/fetch-round.ts) against a real Redis, a real reply
 * router and a worker played on its fetch channel: a batch completes the chunks it names,
 * the last batch every other chunk asked; a chunk not asked, or named twice, fails the
 * worker (`protocol`), so its rows are never counted.
 */
describe('FetchRound: which chunks an answer completes', function () {
  this.timeout(30_000);
  const keys = makeKeys(uniquePrefix());
  let cmd: DstoreRedis;
  let sub: DstoreRedis;
  let router: ReplyRouter;
  let ctx: Pick<CoordinatorContext, 'cmd' | 'keys' | 'router' | 'replyTo'>;
  /** The answer to each FETCH in turn (the last one for any after it), and the `chunks` each FETCH named. */
  let scripts: Script[] = [];
  let asked: string[][] = [];
  let unsubscribe: () => Promise<void>;

  before(async () => {
    const redis = await sharedRedis();
    cmd = createRedis({ url: redis.url, name: `${keys.prefix}:round`, role: 'command' });
    sub = createRedis({ url: redis.url, name: `${keys.prefix}:round-sub`, role: 'subscriber' });
    const read = createRedis({ url: redis.url, name: `${keys.prefix}:round-read`, role: 'blocking' });
    const replyTo = keys.coordReplies('c1');
    router = new ReplyRouter(read, cmd, replyTo, createLogger({ logLevel: 'silent', logFormat: 'json' }));
    await router.start();
    ctx = { cmd, keys, router, replyTo };
    // The worker: answers each FETCH with the batches of its script.
    unsubscribe = await subscribe(sub, keys.workerFetch('w1'), (payload) => {
      const m = decodeFetch(payload);
      if (m.type !== 'FETCH') return;
      const f = m as FetchMessage;
      const script = scripts[Math.min(asked.length, scripts.length - 1)];
      asked.push(f.chunks);
      void (async () => {
        let seq = 0;
        for (const b of script) {
          const resp = build(FetchRespMessage, {
            req: f.req,
            worker: 'w1',
            seq: seq++,
            mode: 'rows',
            count: 0,
            rows: '',
            done: b.done,
            ...(b.chunks ? { chunks: b.chunks } : {}),
            ...(b.code ? { code: b.code, error: 'scripted' } : {}),
            ...(b.missing ? { missing: b.missing } : {}),
          });
          await cmd.xadd(f.replyTo, '*', ...resp.toArgs());
        }
      })();
    });
  });

  after(async () => {
    await unsubscribe();
    await router.stop();
    sub.disconnect();
    cmd.disconnect();
  });

  async function run(chunks: string[], s: Script | Script[], token?: string): Promise<RoundEvent[]> {
    scripts = Array.isArray(s[0]) ? (s as Script[]) : [s as Script];
    asked = [];
    const round = new FetchRound(
      ctx,
      't',
      [{ worker: 'w1', chunks, ...(token ? { token } : {}) }],
      { query: {} },
      { timeoutMs: 5000 },
    );
    const events: RoundEvent[] = [];
    try {
      await round.publish();
      for (let e = await round.next(); e.kind !== 'end'; e = await round.next()) events.push(e);
    } finally {
      round.close();
    }
    return events;
  }

  const completed = (events: RoundEvent[]) =>
    events.map((e) => (e.kind === 'batch' ? [...e.completed] : e.kind === 'failed' ? e.failure.code : e.kind));

  it('the last batch completes every chunk asked that no batch named', async () => {
    const events = await run(['a', 'b', 'c'], [{ chunks: ['b'], done: false }, { done: true }]);
    assert.deepEqual(completed(events), [['b'], ['a', 'c']]);
  });

  it('a single batch without names completes them all; one naming them all (an older worker) too', async () => {
    assert.deepEqual(completed(await run(['a', 'b'], [{ done: true }])), [['a', 'b']]);
    assert.deepEqual(completed(await run(['a', 'b'], [{ chunks: ['b', 'a'], done: true }])), [['b', 'a']]);
  });

  it('a chunk not asked, or named twice, fails the worker and its batch is not counted', async () => {
    assert.deepEqual(completed(await run(['a', 'b'], [{ chunks: ['x'], done: true }])), ['protocol']);
    assert.deepEqual(
      completed(
        await run(
          ['a', 'b'],
          [
            { chunks: ['a'], done: false },
            { chunks: ['a'], done: true },
          ],
        ),
      ),
      [['a'], 'protocol'],
    );
  });

  describe('asked by token', () => {
    const chunks = ['a', 'b', 'c'];
    const token = chunkSetToken(chunks);

    it('names the token instead of the list; an answer completes every chunk', async () => {
      assert.deepEqual(completed(await run(chunks, [{ done: true }], token)), [chunks]);
      assert.deepEqual(asked, [[token]]);
    });

    it('a worker that holds another set (`unlisted`) is asked again with the list, in the same round', async () => {
      const events = await run(
        chunks,
        [[{ done: true, code: 'unlisted' }], [{ chunks: ['b'], done: false }, { done: true }]],
        token,
      );
      assert.deepEqual(completed(events), [['b'], ['a', 'c']]);
      assert.deepEqual(asked, [[token], chunks]);
    });

    it('a worker from before tokens (`missing` naming the token) is asked again with the list too', async () => {
      const events = await run(chunks, [[{ done: true, code: 'missing', missing: [token] }], [{ done: true }]], token);
      assert.deepEqual(completed(events), [chunks]);
      assert.deepEqual(asked, [[token], chunks]);
    });

    it('`unlisted` to a list, or to the list sent after it, fails the worker', async () => {
      assert.deepEqual(completed(await run(chunks, [{ done: true, code: 'unlisted' }])), ['unlisted']);
      assert.deepEqual(completed(await run(chunks, [{ done: true, code: 'unlisted' }], token)), ['unlisted']);
      assert.deepEqual(asked, [[token], chunks]);
    });
  });
});
