/**
 * A command that fails because the connection to Redis went away (a restart, a failover) is
 * a 503 the client may retry, not a 500: the errors are the ones a real ioredis client raises
 * against a port where no Redis listens.
 */
import { strict as assert } from 'node:assert';
import Redis from 'ioredis';
import { fromRedisError } from '../../coordinator/errors';
import { freePort } from '../support/redis';

describe('fromRedisError', () => {
  it('maps a lost connection to 503 redis_unavailable with a retry hint', async () => {
    const port = await freePort();
    for (const opts of [
      { enableOfflineQueue: false, retryStrategy: () => null },
      { maxRetriesPerRequest: 0, retryStrategy: () => 10 },
    ]) {
      const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, ...opts });
      r.on('error', () => undefined);
      r.connect().catch(() => undefined);
      const err = await r.get('k').then(
        () => assert.fail('GET on a closed port answered'),
        (e: Error) => e,
      );
      r.disconnect();
      const api = fromRedisError(err);
      assert.ok(api, `not recognised: ${err.name}: ${err.message}`);
      assert.equal(api.status, 503);
      assert.equal(api.code, 'redis_unavailable');
      assert.equal(api.details.retryAfterSeconds, 1);
      assert.match(api.message, /whether it took effect is unknown/);
    }
  });

  it('leaves other errors alone', () => {
    assert.equal(fromRedisError(new Error('boom')), undefined);
    assert.equal(fromRedisError('x'), undefined);
    assert.equal(fromRedisError(new Error('OOM command not allowed'))?.code, 'redis_full');
  });
});
