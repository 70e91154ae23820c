import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { MessageError } from '../../common/errors';
import {
  decodeFetch,
  decodeOps,
  decodeReply,
  DeleteMessage,
  encodeFetch,
  FetchCreditMessage,
  FetchMessage,
  FetchRespMessage,
  fieldsFromArray,
  OpAckMessage,
  PostAckMessage,
  PostMessage,
  respRows,
  SetupTableMessage,
  UpdateMessage,
  build,
  type Fields,
} from '../../common/messages';

const replyTo = 'dstore:coord:c1:replies';

function roundTrip<T extends { toArgs(): string[] }>(m: T): Fields {
  const args = m.toArgs();
  assert.equal(args.length % 2, 0);
  return fieldsFromArray(args);
}

describe('messages', () => {
  describe('round trips through flat stream fields', () => {
    it('POST keeps ids, rows and replicas, with rows as NDJSON lines', () => {
      const rows = [
        { _id: 'a', x: 1, s: 'has,comma' },
        { _id: 'b', nested: { y: [1, 2] }, s: 'line\nbreak' },
      ];
      const m = build(PostMessage, {
        chunk: 'c1',
        post: 'p1',
        table: 'events',
        replicas: ['w1', 'w2'],
        replyTo,
        ids: rows.map((r) => r._id),
        rows: rows.map((r) => JSON.stringify(r)),
      });
      const f = roundTrip(m);
      assert.equal(f.type, 'POST');
      assert.equal(f.replicas, 'w1,w2');
      assert.equal(f.rows.split('\n').length, 2, 'a newline inside a value is escaped by JSON, so lines stay rows');
      const back = decodeOps(f) as PostMessage;
      assert.ok(back instanceof PostMessage);
      assert.deepEqual(back.replicas, ['w1', 'w2']);
      assert.deepEqual(back.ids, ['a', 'b']);
      assert.deepEqual(
        back.rows.map((r) => JSON.parse(r)),
        rows,
      );
    });

    it('UPDATE and DELETE keep their filters as JSON', () => {
      const u = build(UpdateMessage, {
        op: 'o1',
        table: 't',
        where: { a: { $gt: 1 } },
        set: { 'b.c': [1, { d: null }] },
        replyTo,
      });
      const ub = decodeOps(roundTrip(u)) as UpdateMessage;
      assert.deepEqual(ub.where, { a: { $gt: 1 } });
      assert.deepEqual(ub.set, { 'b.c': [1, { d: null }] });
      const d = build(DeleteMessage, { op: 'o2', table: 't', where: {}, replyTo });
      assert.deepEqual((decodeOps(roundTrip(d)) as DeleteMessage).where, {});
    });

    it('SETUP_TABLE keeps its schema and version', () => {
      const s = build(SetupTableMessage, { op: 'o3', table: 't', schema: { a: 'integer' }, version: 3, replyTo });
      const back = decodeOps(roundTrip(s)) as SetupTableMessage;
      assert.deepEqual(back.schema, { a: 'integer' });
      assert.equal(back.version, 3);
    });

    it('acks keep numbers and booleans typed', () => {
      const a = build(PostAckMessage, {
        chunk: 'c1',
        post: 'p1',
        worker: 'w1',
        status: 'ok',
        rows: 10,
        duplicate: true,
      });
      const back = decodeReply(roundTrip(a)) as PostAckMessage;
      assert.equal(back.rows, 10);
      assert.equal(back.duplicate, true);
      const o = build(OpAckMessage, {
        op: 'o1',
        kind: 'UPDATE',
        worker: 'w1',
        status: 'ok',
        count: 3,
        counts: { c1: 2, c2: 1 },
      });
      assert.deepEqual((decodeReply(roundTrip(o)) as OpAckMessage).counts, { c1: 2, c2: 1 });
    });

    it('FETCH survives the pub/sub JSON encoding and FETCH_RESP keeps empty batches empty', () => {
      const f = build(FetchMessage, {
        req: 'r1',
        worker: 'w1',
        replyTo,
        table: 't',
        chunks: ['c1', 'c2'],
        where: { x: 1 },
        sort: [{ field: 'x', dir: 'desc' }],
        limit: 5,
        timeoutMs: 1000,
      });
      const back = decodeFetch(encodeFetch(f)) as FetchMessage;
      assert.equal(back.type, 'FETCH');
      assert.deepEqual(back.chunks, ['c1', 'c2']);
      assert.deepEqual(back.sort, [{ field: 'x', dir: 'desc' }]);
      assert.equal(back.limit, 5);
      const credit = decodeFetch(encodeFetch(build(FetchCreditMessage, { req: 'r1', worker: 'w1', granted: -1 })));
      assert.deepEqual([credit.type, (credit as FetchCreditMessage).granted], ['FETCH_CREDIT', -1]);
      const r = build(FetchRespMessage, {
        req: 'r1',
        worker: 'w1',
        seq: 0,
        mode: 'rows',
        count: 2,
        rows: '{"a":1}\n{"a":2}',
        done: true,
      });
      const rb = decodeReply(roundTrip(r)) as FetchRespMessage;
      assert.deepEqual(respRows(rb), ['{"a":1}', '{"a":2}']);
      assert.equal(rb.done, true);
    });
  });

  describe('rejections', () => {
    const good = (): Fields =>
      roundTrip(
        build(PostMessage, {
          chunk: 'c1',
          post: 'p1',
          table: 't',
          replicas: ['w1'],
          replyTo,
          ids: ['a'],
          rows: ['{"_id":"a"}'],
        }),
      );

    const cases: [string, (f: Fields) => void, RegExp][] = [
      ['an unknown type', (f) => (f.type = 'NOPE'), /unknown message type "NOPE"/],
      ['a missing type', (f) => delete f.type, /unknown message type/],
      ['a missing chunk id', (f) => delete f.chunk, /chunk/],
      ['a table name with ":"', (f) => (f.table = 'a:b'), /table/],
      ['an empty replica list', (f) => (f.replicas = ''), /replicas/],
      ['a replica that is not a worker id', (f) => (f.replicas = 'w1,bad id'), /replicas/],
      ['a replyTo with spaces', (f) => (f.replyTo = 'x y'), /replyTo/],
    ];
    for (const [what, mutate, re] of cases) {
      it(`refuses a POST with ${what}`, () => {
        const f = good();
        mutate(f);
        assert.throws(
          () => decodeOps(f),
          (e: unknown) => e instanceof MessageError && re.test(e.message),
        );
      });
    }

    it('accepts a POST with no ids and no rows: the copy of a chunk whose rows were all deleted', () => {
      const f = good();
      f.ids = '';
      f.rows = '';
      const m = decodeOps(f) as PostMessage;
      assert.deepEqual([m.ids, m.rows], [[], []]);
    });

    it('refuses invalid JSON and wrong JSON shapes in an UPDATE', () => {
      const f = roundTrip(build(UpdateMessage, { op: 'o1', table: 't', where: {}, set: { a: 1 }, replyTo }));
      assert.throws(() => decodeOps({ ...f, where: '{nope' }), /UPDATE.where: not valid JSON/);
      assert.throws(() => decodeOps({ ...f, set: '[1,2]' }), /set/);
    });

    it('refuses non-integer numbers and non-boolean flags in replies', () => {
      const f = roundTrip(
        build(PostAckMessage, { chunk: 'c1', post: 'p1', worker: 'w1', status: 'ok', rows: 1, duplicate: false }),
      );
      assert.throws(() => decodeReply({ ...f, rows: '1.5' }), /rows: expected an integer/);
      assert.throws(() => decodeReply({ ...f, duplicate: 'yes' }), /duplicate: expected 0 or 1/);
      assert.throws(() => decodeReply({ ...f, status: 'maybe' }), /status/);
    });

    it('refuses a FETCH that is not a JSON object or names no worker', () => {
      assert.throws(() => decodeFetch('not json'), MessageError);
      assert.throws(() => decodeFetch('[1]'), MessageError);
      const f = build(FetchMessage, { req: 'r1', worker: 'w1', replyTo, table: 't', chunks: ['c1'], timeoutMs: 10 });
      const obj = JSON.parse(encodeFetch(f));
      delete obj.worker;
      assert.throws(() => decodeFetch(JSON.stringify(obj)), /worker/);
    });

    it('build() refuses to produce an invalid message', () => {
      assert.throws(
        () =>
          build(PostAckMessage, { chunk: 'c 1', post: 'p1', worker: 'w1', status: 'ok', rows: -1, duplicate: false }),
        /chunk.*rows|rows.*chunk/s,
      );
    });
  });
});
