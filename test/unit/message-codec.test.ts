import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { MessageError } from '../../common/errors';
import {
  build,
  decodeOps,
  decodeReply,
  fieldsFromArray,
  PostAckMessage,
  PostMessage,
  type Fields,
} from '../../common/messages';

/**
 * The stream encoding's guarantees that a chunk reaches a worker as it was sent: a `lines`
 * field refuses an item holding a line break (it would be read back as several items), and a
 * POST_ACK carries the refusal's code and row.
 */

const replyTo = 'dstore:coord:c1:replies';

function roundTrip<T extends { toArgs(): string[] }>(m: T): Fields {
  return fieldsFromArray(m.toArgs());
}

describe('lines fields (one item a line)', () => {
  const post = (ids: string[], rows: string[]) =>
    build(PostMessage, { chunk: 'c1', post: 'p1', table: 't', replicas: ['w1'], replyTo, ids, rows });

  for (const [what, brk] of [
    ['LF', '\n'],
    ['CR', '\r'],
    ['CRLF', '\r\n'],
  ]) {
    it(`refuses to encode a row holding a raw ${what}, naming the field and the item`, () => {
      const m = post(['a', 'b'], ['{"_id":"a"}', `{"_id":"b",${brk}"x":1}`]);
      assert.throws(
        () => m.toArgs(),
        (e: unknown) =>
          e instanceof MessageError &&
          e.messageType === 'POST' &&
          /^POST\.rows: item 2 of 2 holds a line break .*JSON\.stringify/.test(e.message),
      );
    });
  }

  it('refuses an id holding a line break too', () => {
    assert.throws(
      () => post(['a\nb'], ['{}']).toArgs(),
      (e: unknown) => e instanceof MessageError && /^POST\.ids: item 1 of 1 holds a line break/.test(e.message),
    );
  });

  it('encodes escaped line breaks (JSON text) as they are: N rows stay N rows', () => {
    const rows = [JSON.stringify({ s: 'x\ny\r\nz' }), '{"a":1}'];
    const f = roundTrip(post(['a', 'b'], rows));
    assert.deepEqual((decodeOps(f) as PostMessage).rows, rows);
  });
});

describe('POST_ACK refusal codes', () => {
  const ack = {
    chunk: 'c1',
    post: 'p1',
    worker: 'w1',
    status: 'error' as const,
    rows: 0,
    duplicate: false,
    error: 'duplicate _id "x"',
  };

  it('carry a code and the row at fault', () => {
    const back = decodeReply(
      roundTrip(build(PostAckMessage, { ...ack, code: 'duplicate-id', row: 7 })),
    ) as PostAckMessage;
    assert.equal(back.code, 'duplicate-id');
    assert.equal(back.row, 7);
  });

  it('decode without them from older workers', () => {
    const back = decodeReply(roundTrip(build(PostAckMessage, ack))) as PostAckMessage;
    assert.equal(back.code, undefined);
    assert.equal(back.row, undefined);
  });

  it('refuse an unknown code and a row below 1', () => {
    const f = roundTrip(build(PostAckMessage, { ...ack, code: 'bad-input' }));
    assert.throws(() => decodeReply({ ...f, code: 'gremlins' }), /code/);
    assert.throws(() => decodeReply({ ...f, row: '0' }), /row/);
  });
});
