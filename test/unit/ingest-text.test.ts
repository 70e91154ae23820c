import { strict as assert } from 'node:assert';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { compactJson, withIdFirst } from '../../coordinator/ingest';
import { parseRecords } from '../../coordinator/record-parsers';
import { rng } from '../support/data';

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

/** `v` as JSON with `ws()` between every two tokens: any formatting a JSON writer may produce. */
function spaced(v: unknown, ws: () => string): string {
  if (Array.isArray(v))
    return v.length === 0 ? `[${ws()}]` : `[${ws()}${v.map((x) => spaced(x, ws)).join(`${ws()},${ws()}`)}${ws()}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}${ws()}:${ws()}${spaced(x, ws)}`);
    return entries.length === 0 ? `{${ws()}}` : `{${ws()}${entries.join(`${ws()},${ws()}`)}${ws()}}`;
  }
  return JSON.stringify(v);
}

const WHITESPACE = ['', ' ', '\t', '\n', '\r\n', '\r', '\n      ', ' \r\n\t '];

/** A whitespace picker driven by `seed`. */
function picker(seed: number): () => string {
  const next = rng(seed);
  return () => WHITESPACE[Math.floor(next() * WHITESPACE.length)];
}

const safeKey = fc.string({ maxLength: 6 }).filter((k) => k !== '__proto__' && k !== '_id');
const record = fc
  .dictionary(safeKey, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 })
  .filter((v) => !JSON.stringify(v).includes('"__proto__"'));

describe('ingest: a stored row never holds a line break', () => {
  it('compacts a pretty-printed record and reuses its text (no re-serialising)', () => {
    const text = '{\r\n   "_id" : "a1",\n   "name":"x  y\\n z",\n\t"n": [ 1 ,\n 2 ],\n   "o": { }\n}\n';
    assert.equal(withIdFirst(text, 'a1', false), '{"_id":"a1","name":"x  y\\n z","n":[1,2],"o":{}}');
    assert.equal(withIdFirst('{\n  "name": "x"\n}', 'G1', true), '{"_id":"G1","name":"x"}');
    assert.equal(withIdFirst('{\n}', 'G1', true), '{"_id":"G1"}');
  });

  it('compactJson keeps strings as they are: spaces, escaped quotes, backslashes and escaped breaks', () => {
    assert.equal(
      compactJson(' {\n "a b" : "c \\" d" ,\r\n "e\\\\" : [ "\\\\" , "\\r\\n" , " " ] }\n'),
      '{"a b":"c \\" d","e\\\\":["\\\\","\\r\\n"," "]}',
    );
    assert.equal(compactJson('"  "'), '"  "');
    assert.equal(compactJson('[ ]'), '[]');
  });

  it('for any record in any formatting: one line, the same value, _id first', () => {
    fc.assert(
      fc.property(record, fc.integer(), fc.boolean(), (v, seed, gen) => {
        const ws = picker(seed);
        const value = gen ? v : { _id: 'k1', ...v };
        const text = ws() + spaced(value, ws) + ws();
        const out = withIdFirst(text, gen ? 'G1' : 'k1', gen);
        if (out === undefined) return; // re-serialised by the caller: JSON.stringify writes one line
        assert.ok(!/[\n\r]/.test(out), `a line break in ${JSON.stringify(out)}`);
        assert.deepEqual(JSON.parse(out), JSON.parse(reference(text, gen ? 'G1' : 'k1')));
        // Textually first (JSON.parse would list integer-like keys before it).
        assert.ok(out.startsWith(`{"_id":"${gen ? 'G1' : 'k1'}"`), out);
      }),
      { seed: 1212, numRuns: 500 },
    );
  });

  it('a pretty-printed array parsed and prepared gives one line per record', async () => {
    const records = Array.from({ length: 50 }, (_, i) => ({ n: i, s: `a\nb ${i}`, o: { deep: [i, { x: null }] } }));
    const body = '\ufeff' + JSON.stringify(records, null, 2).replace(/\n/g, '\r\n');
    const lines: string[] = [];
    for await (const rec of parseRecords(Readable.from([body]), 'json', undefined))
      lines.push(withIdFirst(rec.text!, `G${rec.row}`, true)!);
    assert.equal(lines.join('\n').split('\n').length, 50);
    assert.deepEqual(
      lines.map((l) => JSON.parse(l)),
      records.map((r, i) => ({ _id: `G${i + 1}`, ...r })),
    );
  });
});
