import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { ulid } from 'ulid';
import type { PostAckMessage } from '../../common/messages';
import { makeRows } from '../support/data';
import { Driver } from '../support/driver';
import { startWorkerProcess, tempDir, type ChildHandle } from '../support/processes';
import { dropPrefix, sharedRedis, uniquePrefix, type TestRedis } from '../support/redis';
import { waitFor } from '../support/wait';

/**
 * A real worker process refusing chunks: each refusal's POST_ACK carries a `code` the
 * worker chose from the error's class (and the row at fault, when there is one), so the
 * coordinator never reads the wording; each refused entry is also dead-lettered with its type.
 */
describe('worker refusals (real child process, real Redis)', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let prefix: string;
  let driver: Driver;
  let worker: ChildHandle | undefined;

  before(async () => {
    redis = await sharedRedis();
    prefix = uniquePrefix();
    driver = new Driver(redis.url, prefix);
    worker = startWorkerProcess({ redisUrl: redis.url, prefix, id: 'w1', dataDir: tempDir('refusals-w1') });
    await waitFor(async () => (await driver.status('w1'))?.ready === true, {
      what: 'worker w1 ready',
      timeoutMs: 20_000,
    }).catch((e) => {
      throw new Error(`${(e as Error).message}\n${worker?.tail(30)}`);
    });
  });

  after(async () => {
    await worker?.stop();
    await driver?.close();
    if (prefix) await dropPrefix(redis.url, prefix);
  });

  /** The one POST_ACK of a chunk, once it arrived. */
  async function ackOf(chunk: string): Promise<PostAckMessage> {
    await driver.until(() => driver.acksFor(chunk).length > 0, `the POST_ACK of chunk ${chunk}`);
    return driver.acksFor(chunk)[0] as PostAckMessage;
  }

  it('acks a stored chunk without a code', async () => {
    const ok = driver.post('t', makeRows(5, 1, 'a'), ['w1']);
    await driver.send('w1', ok);
    const ack = await ackOf(ok.chunk);
    assert.equal(ack.status, 'ok');
    assert.equal(ack.code, undefined);
  });

  it('duplicate-id, with the row of the chunk that repeats a stored _id', async () => {
    const rows = [...makeRows(3, 2, 'b'), makeRows(5, 1, 'a')[4]];
    const dup = driver.post('t', rows, ['w1']);
    await driver.send('w1', dup);
    const ack = await ackOf(dup.chunk);
    assert.equal(ack.status, 'error');
    assert.equal(ack.code, 'duplicate-id');
    assert.equal(ack.row, 4);
    assert.match(ack.error!, /^duplicate _id "a0000004" in table t \(row 4 of chunk /);
  });

  it('bad-input, for a chunk whose rows do not match its ids (what pretty-printed JSON used to send)', async () => {
    const chunk = ulid();
    const args = driver.post('t', makeRows(2, 3, 'c'), ['w1'], chunk).encode();
    // Written by hand: the codec refuses to encode a row with a line break.
    args.rows = '{\n"n":1}\n{"n":2}';
    await driver.xadd('w1', Object.entries(args).flat());
    const ack = await ackOf(chunk);
    assert.equal(ack.code, 'bad-input');
    assert.equal(ack.row, undefined);
    assert.match(ack.error!, /has 2 ids but 3 rows/);
  });

  it('aborted, for a late chunk of an aborted POST', async () => {
    const post = ulid();
    const op = await driver.abort(['w1'], post);
    await driver.until(() => driver.opAcks(op).length > 0, 'the ABORT ack');
    const late = driver.post('t', makeRows(2, 4, 'd'), ['w1'], ulid(), post);
    await driver.send('w1', late);
    const ack = await ackOf(late.chunk);
    assert.equal(ack.code, 'aborted');
    assert.match(ack.error!, /was aborted/);
  });

  it('dead-letters each refused entry with its reason and type', async () => {
    const dead = await waitFor(
      async () => {
        const all = await driver.deadLetters();
        return all.length >= 3 ? all : undefined;
      },
      { what: 'three dead letters' },
    );
    assert.deepEqual(
      dead.map((d) => [d.type, d.worker]),
      [
        ['POST', 'w1'],
        ['POST', 'w1'],
        ['POST', 'w1'],
      ],
    );
    assert.match(dead[0].reason, /duplicate _id "a0000004"/);
    assert.match(dead[1].reason, /has 2 ids but 3 rows/);
    assert.match(dead[2].reason, /was aborted/);
  });
});
