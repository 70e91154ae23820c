import { strict as assert } from 'node:assert';
import { withIdFirst } from '../../coordinator/ingest';

/** What ingest stores without the shortcut: the parsed value re-serialised with `_id` first. */
function reference(text: string, id: string): string {
  const { _id, ...rest } = JSON.parse(text) as Record<string, unknown>;
  void _id;
  return JSON.stringify({ _id: id, ...rest });
}

describe('ingest: reusing the record text (withIdFirst)', () => {
  const given: [string, string][] = [
    ['{"_id":"a1","n":1,"o":{"x":[1,2]}}', 'a1'],
    ['{"_id":"a1"}', 'a1'],
    ['  {"_id":"q\\"x","n":1.5}  ', 'q"x'],
  ];
  for (const [text, id] of given) {
    it(`keeps ${JSON.stringify(text)} as the same JSON value with _id first`, () => {
      const out = withIdFirst(text, id, false);
      assert.ok(out !== undefined);
      assert.deepEqual(JSON.parse(out), JSON.parse(reference(text, id)));
      assert.ok(out.startsWith(`{"_id":${JSON.stringify(id)}`));
    });
  }

  const generated = ['{"n":1,"s":"x"}', '{}', '{ }', ' {"o":{"k":null}} '];
  for (const text of generated) {
    it(`puts a generated _id first in ${JSON.stringify(text)}`, () => {
      const out = withIdFirst(text, 'G1', true);
      assert.ok(out !== undefined);
      assert.equal(Object.keys(JSON.parse(out))[0], '_id');
      assert.deepEqual(JSON.parse(out), JSON.parse(reference(text, 'G1')));
    });
  }

  const fallBack: [string, string, boolean][] = [
    ['{"n":1,"_id":"a1"}', 'a1', false], // _id not first
    ['{"_id": "a1","n":1}', 'a1', false], // spacing differs from the canonical head
    ['{"_id":"a1","_id":"a2"}', 'a2', false], // duplicate key: JSON.parse keeps the last
    ['{"_id":"a1","\\u005fid":"a2"}', 'a2', false], // an escaped duplicate
    ['{"_id":"a10","n":1}', 'a1', false], // a longer id with the same start
    ['{"o":{"_id":1}}', 'G1', true], // "_id" nested: keep it simple, re-serialise
  ];
  for (const [text, id, gen] of fallBack) {
    it(`re-serialises ${JSON.stringify(text)}`, () => {
      assert.equal(withIdFirst(text, id, gen), undefined);
    });
  }
});
