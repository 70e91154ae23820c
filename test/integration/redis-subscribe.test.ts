import { strict as assert } from 'node:assert';
import { createRedis, subscribe } from '../../common/redis';
import { sharedRedis, uniquePrefix } from '../support/redis';

/**
 * A SUBSCRIBE issued while the connection is still connecting used to race ioredis' ready
 * check: the check (INFO) failed in subscriber mode, the connection was dropped and came
 * back without the subscription, and about one worker start in thirty never heard a FETCH.
 */
describe('subscribe() on a connection that is still connecting', function () {
  this.timeout(60_000);

  it('is subscribed once it resolves, on every one of 60 fresh connections', async () => {
    const redis = await sharedRedis();
    const prefix = uniquePrefix();
    const subs = Array.from({ length: 60 }, (_, i) =>
      createRedis({ url: redis.url, name: `${prefix}:sub${i}`, role: 'subscriber' }),
    );
    const check = createRedis({ url: redis.url, name: `${prefix}:check`, role: 'command' });
    try {
      // Subscribed at the moment the socket connects, before ioredis calls the connection ready.
      await Promise.all(
        subs.map(
          (s, i) =>
            new Promise<void>((resolve, reject) => {
              s.once('connect', () => {
                subscribe(s, `${prefix}:ch${i}`, () => undefined).then(() => resolve(), reject);
              });
            }),
        ),
      );
      // Let a dropped connection come back (without its subscription, before the fix).
      await new Promise((r) => setTimeout(r, 300));
      const counts = (await check.call('PUBSUB', 'NUMSUB', ...subs.map((_, i) => `${prefix}:ch${i}`))) as (
        string | number
      )[];
      const missing = subs.map((_, i) => `${prefix}:ch${i}`).filter((_, i) => Number(counts[2 * i + 1]) !== 1);
      assert.deepEqual(missing, []);
    } finally {
      for (const s of subs) s.disconnect();
      check.disconnect();
    }
  });
});
