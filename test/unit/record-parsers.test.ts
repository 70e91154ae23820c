import { strict as assert } from 'node:assert';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { ApiError } from '../../coordinator/errors';
import { formatOf, parseRecords, type ParsedRecord, type RecordFormat } from '../../coordinator/record-parsers';
import type { Schema } from '../../coordinator/schema';

/** `{row, value}` of a record, after checking that its `text`, when given, parses to `value`. */
function withoutText(r: ParsedRecord): ParsedRecord {
  if (r.text !== undefined)
    assert.deepEqual(JSON.parse(r.text), r.value, `row ${r.row}: text ${r.text} does not parse to the value`);
  return { row: r.row, value: r.value };
}

async function collect(pieces: (string | Buffer)[], format: RecordFormat, schema?: Schema): Promise<ParsedRecord[]> {
  const out: ParsedRecord[] = [];
  for await (const r of parseRecords(Readable.from(pieces), format, schema)) out.push(withoutText(r));
  return out;
}

/** The body cut in two at byte `i` (0 and length included: one piece is empty). */
function splitAt(buf: Buffer, i: number): Buffer[] {
  return [buf.subarray(0, i), buf.subarray(i)];
}

function bytesOf(buf: Buffer): Buffer[] {
  return [...buf].map((b) => Buffer.from([b]));
}

/** Every way to feed `text`: whole, cut at each byte, and one byte at a time. */
function feedings(text: string): { how: string; pieces: Buffer[] }[] {
  const buf = Buffer.from(text, 'utf8');
  const out = [
    { how: 'whole', pieces: [buf] },
    { how: 'byte by byte', pieces: bytesOf(buf) },
  ];
  for (let i = 0; i <= buf.length; i++) out.push({ how: `cut at byte ${i}`, pieces: splitAt(buf, i) });
  return out;
}

/** Awaits the parse and checks it fails with a 400 ApiError whose message matches. */
async function rejects400(
  pieces: (string | Buffer)[],
  format: RecordFormat,
  message: RegExp,
  schema?: Schema,
): Promise<ApiError> {
  let err: unknown;
  try {
    await collect(pieces, format, schema);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
  assert.equal(err.status, 400);
  assert.match(err.message, message);
  return err;
}

describe('record parsers', () => {
  describe('formatOf', () => {
    it('recognises NDJSON, JSON and CSV content types, ignoring case and parameters', () => {
      assert.equal(formatOf('application/x-ndjson'), 'ndjson');
      assert.equal(formatOf('application/ndjson; charset=utf-8'), 'ndjson');
      assert.equal(formatOf('application/jsonl'), 'ndjson');
      assert.equal(formatOf('application/jsonlines'), 'ndjson');
      assert.equal(formatOf('Application/JSON; charset=UTF-8'), 'json');
      assert.equal(formatOf(' application/json '), 'json');
      assert.equal(formatOf('text/csv'), 'csv');
      assert.equal(formatOf('application/csv;header=present'), 'csv');
    });

    it('returns undefined for other or missing content types', () => {
      assert.equal(formatOf(undefined), undefined);
      assert.equal(formatOf(''), undefined);
      assert.equal(formatOf('text/plain'), undefined);
      assert.equal(formatOf('application/json-patch+json'), undefined);
      assert.equal(formatOf('application/octet-stream'), undefined);
    });
  });

  describe('JSON array', () => {
    // Written by hand so that it holds escapes JSON.stringify would never produce.
    const ELEMENTS = [
      '{"a": 1, "b": [1, 2, {"c": "]"}], "s": "x,y"}',
      '"str with ] and , and \\" and \\\\ and { and } and ["',
      '[]',
      '{}',
      '[[[]], {"x": {"y": [{}]}}]',
      '{"u": "é日本😀", "q": "say \\"hi\\"", "bs": "\\\\", "esc": "\\\\\\"", "k\\"]": "v"}',
      '"\\u005d\\u0022\\u002c\\ud83d\\ude00"',
      'null',
      'true',
      'false',
      '-1.5e3',
      '0',
      '"\\\\"',
      '{"deep": [[[[{"]": "}"}]]]]}',
    ];

    it('yields the elements of a compact array fed in any pieces', async () => {
      const text = '[' + ELEMENTS.map((e) => JSON.stringify(JSON.parse(e))).join(',') + ']';
      const want = (JSON.parse(text) as unknown[]).map((value, i) => ({ row: i + 1, value }));
      for (const { how, pieces } of feedings(text)) assert.deepEqual(await collect(pieces, 'json'), want, how);
    });

    it('yields the elements of a spaced-out array with a BOM, escapes and CRLF, fed in any pieces', async () => {
      const body = '[\n  ' + ELEMENTS.join(' ,\r\n\t') + '\r\n]\n  ';
      const want = (JSON.parse(body) as unknown[]).map((value, i) => ({ row: i + 1, value }));
      assert.equal(want.length, ELEMENTS.length);
      for (const { how, pieces } of feedings('\ufeff' + body))
        assert.deepEqual(await collect(pieces, 'json'), want, how);
    });

    it('yields the elements when cut at every pair of byte positions', async () => {
      const text = '[{"a":"]\\"","b":[1,{}]}, "\\\\", "é😀" ,[]]';
      const want = (JSON.parse(text) as unknown[]).map((value, i) => ({ row: i + 1, value }));
      const buf = Buffer.from(text);
      for (let i = 0; i <= buf.length; i++) {
        for (let j = i; j <= buf.length; j++) {
          assert.deepEqual(
            await collect([buf.subarray(0, i), buf.subarray(i, j), buf.subarray(j)], 'json'),
            want,
            `cut at ${i} and ${j}`,
          );
        }
      }
    });

    it('accepts string pieces as well as buffers', async () => {
      assert.deepEqual(await collect(['[1', ',"a', ']"', ']'], 'json'), [
        { row: 1, value: 1 },
        { row: 2, value: 'a]' },
      ]);
    });

    it('yields nothing for an empty array', async () => {
      for (const text of ['[]', '[ ]', ' \n[\r\n]\n', '\ufeff[]']) {
        for (const { how, pieces } of feedings(text))
          assert.deepEqual(await collect(pieces, 'json'), [], `${JSON.stringify(text)} ${how}`);
      }
    });

    it('rejects a body that is not an array with a 400', async () => {
      for (const text of ['{"a": 1}', '"[1]"', '1', 'null', 'x[1]']) await rejects400([text], 'json', /array/);
    });

    it('rejects an empty body with a 400', async () => {
      for (const pieces of [[], [''], ['  \n\t'], ['\ufeff']]) await rejects400(pieces, 'json', /empty/);
    });

    it('rejects an unclosed array with a 400 naming the row', async () => {
      await rejects400(['['], 'json', /row 1\b.*not closed/);
      await rejects400(['[1, 2'], 'json', /row 2\b.*not closed/);
      await rejects400(['[1, '], 'json', /row 2\b.*not closed/);
      await rejects400(['[{"a": [1, 2]}'], 'json', /row 1\b.*not closed/);
      await rejects400(['[1, "abc]'], 'json', /row 2\b.*not closed/);
      await rejects400(['[1, {"a": "x"]'], 'json', /row 2\b/);
    });

    it('rejects trailing garbage after the closing bracket with a 400', async () => {
      for (const text of ['[1] x', '[] []', '[1]]', '[1],']) {
        for (const { how, pieces } of feedings(text))
          await rejects400(pieces, 'json', /after the end/).catch((e: Error) =>
            assert.fail(`${text} ${how}: ${e.message}`),
          );
      }
    });

    it('rejects an invalid element with a 400 naming its row, after yielding the rows before it', async () => {
      const text = '[1, {"ok": true}, {bad}, 4]';
      for (const { how, pieces } of feedings(text)) {
        const got: ParsedRecord[] = [];
        let err: unknown;
        try {
          for await (const r of parseRecords(Readable.from(pieces), 'json', undefined)) got.push(withoutText(r));
        } catch (e) {
          err = e;
        }
        assert.deepEqual(got, [
          { row: 1, value: 1 },
          { row: 2, value: { ok: true } },
        ]);
        assert.ok(
          err instanceof ApiError && err.status === 400 && /row 3\b/.test(err.message),
          `${how}: ${String(err)}`,
        );
      }
      await rejects400(['[1,,2]'], 'json', /row 2\b/);
      await rejects400(['[1,]'], 'json', /row 2\b/);
      await rejects400(['[1 2]'], 'json', /row 1\b/);
      await rejects400(['[}]'], 'json', /row 1\b/);
      await rejects400(['[{"a":1}}]'], 'json', /row 1\b/);
      await rejects400(['["a", \'b\']'], 'json', /row 2\b/);
    });
  });

  describe('JSON array in any formatting JSON allows', () => {
    const WS = ['', ' ', '\t', '\n', '\r\n', '\r', '\n   ', ' \r\n\t'];
    /** `v` as JSON with whitespace from `pick` between every two tokens. */
    const spaced = (v: unknown, pick: () => string): string => {
      if (Array.isArray(v)) return `[${pick()}${v.map((x) => spaced(x, pick)).join(`${pick()},${pick()}`)}${pick()}]`;
      if (v && typeof v === 'object')
        return `{${pick()}${Object.entries(v)
          .map(([k, x]) => `${JSON.stringify(k)}${pick()}:${pick()}${spaced(x, pick)}`)
          .join(`${pick()},${pick()}`)}${pick()}}`;
      return JSON.stringify(v);
    };
    const value = fc.jsonValue({ maxDepth: 3 }).filter((v) => !JSON.stringify(v).includes('"__proto__"'));

    it('finds the same elements as JSON.parse, whatever whitespace, BOM and pieces', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(value, { maxLength: 8 }),
          fc.array(fc.nat(WS.length - 1), { minLength: 1, maxLength: 64 }),
          fc.boolean(),
          fc.array(fc.nat(), { maxLength: 4 }),
          async (elements, picks, bom, cuts) => {
            let p = 0;
            const pick = () => WS[picks[p++ % picks.length]];
            const body = (bom ? '\ufeff' : '') + pick() + spaced(elements, pick) + pick();
            const buf = Buffer.from(body);
            const at = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
            const pieces = [0, ...at].map((from, i, all) => buf.subarray(from, all[i + 1] ?? buf.length));
            const want = (JSON.parse(body.replace(/^\ufeff/, '')) as unknown[]).map((v, i) => ({
              row: i + 1,
              value: v,
            }));
            assert.deepEqual(await collect(pieces, 'json'), want);
          },
        ),
        { seed: 4242, numRuns: 300 },
      );
    });

    it('yields the elements of a pretty-printed array of records (JSON.stringify(x, null, 2), CRLF, BOM)', async () => {
      const records = [{ a: 1, b: { c: [1, 2, { d: 'x\ny' }] } }, { e: [] }, { f: {} }, { g: 'say "hi"\r\n' }];
      for (const indent of [2, 4, '\t']) {
        for (const eol of ['\n', '\r\n']) {
          const body = '\ufeff' + JSON.stringify(records, null, indent).replace(/\n/g, eol) + eol;
          for (const { how, pieces } of feedings(body).slice(0, 40)) {
            assert.deepEqual(
              await collect(pieces, 'json'),
              records.map((value, i) => ({ row: i + 1, value })),
              `indent ${JSON.stringify(indent)}, ${JSON.stringify(eol)}, ${how}`,
            );
          }
        }
      }
    });

    it('accepts a BOM as the first character only', async () => {
      await rejects400(['[1,\ufeff2]'], 'json', /row 2\b.*invalid JSON/);
      await rejects400(['\ufeff\ufeff[1]'], 'json', /must be an array/);
      await rejects400([' \ufeff[1]'], 'json', /must be an array/);
      await rejects400(['[1]\ufeff'], 'json', /after the end/);
    });

    it('refuses what JSON does not count as whitespace between elements', async () => {
      await rejects400(['[1,\u00a02]'], 'json', /row 2\b/);
      await rejects400(['[1,\f2]'], 'json', /row 2\b/);
      await rejects400(['\u2028[1]'], 'json', /must be an array/);
    });
  });

  describe('NDJSON', () => {
    const TEXT = '{"a":1}\n\n   \n{"b":[1,"x\\ny"],"c":"é😀"}\r\n"str"\r\n\r\n[1,{"d":null}]\n\t\n42';

    it('yields one record per non-blank line, numbered by record (blank lines are none), fed in any pieces', async () => {
      const want = [
        { row: 1, value: { a: 1 } },
        { row: 2, value: { b: [1, 'x\ny'], c: 'é😀' } },
        { row: 3, value: 'str' },
        { row: 4, value: [1, { d: null }] },
        { row: 5, value: 42 },
      ];
      for (const { how, pieces } of feedings(TEXT)) assert.deepEqual(await collect(pieces, 'ndjson'), want, how);
    });

    it('yields nothing for an empty or blank body', async () => {
      assert.deepEqual(await collect([], 'ndjson'), []);
      assert.deepEqual(await collect(['\n\r\n  \n'], 'ndjson'), []);
      assert.deepEqual(await collect(['\ufeff'], 'ndjson'), []);
      assert.deepEqual(await collect(['\ufeff\r\n\t\r\n'], 'ndjson'), []);
    });

    it('reads a BOM, then blank lines, before the first record, fed in any pieces', async () => {
      const text = '\ufeff\r\n\n  \r\n{"a":1}\r\n\r\n{"b":2}';
      for (const { how, pieces } of feedings(text)) {
        assert.deepEqual(
          await collect(pieces, 'ndjson'),
          [
            { row: 1, value: { a: 1 } },
            { row: 2, value: { b: 2 } },
          ],
          how,
        );
      }
    });

    it('finds the same records whatever blank lines and line ends surround them', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.jsonValue({ maxDepth: 2 }), { minLength: 1, maxLength: 8 }),
          fc.array(fc.constantFrom('\n', '\r\n', '\r', '\n\n', '\r\n  \t\r\n', '\n \n'), {
            minLength: 1,
            maxLength: 8,
          }),
          fc.boolean(),
          async (values, ends, bom) => {
            const body =
              (bom ? '\ufeff' : '') + values.map((v, i) => JSON.stringify(v) + ends[i % ends.length]).join('');
            const got = await collect([Buffer.from(body)], 'ndjson');
            assert.deepEqual(
              got.map((r) => r.value),
              JSON.parse(JSON.stringify(values)),
            );
          },
        ),
        { seed: 77, numRuns: 200 },
      );
    });

    it('rejects an invalid line with a 400 naming its record number and its line', async () => {
      for (const { how, pieces } of feedings('\n{"a":1}\r\n\n{bad}\n{"c":3}\n')) {
        await rejects400(pieces, 'ndjson', /^row 2 \(line 4\): invalid JSON/).catch((e: Error) =>
          assert.fail(`${how}: ${e.message}`),
        );
      }
      await rejects400(['{"a":1}\n{"a":1} {"b":2}\n'], 'ndjson', /^row 2\b/);
      await rejects400(['[1,\n2]\n'], 'ndjson', /^row 1\b/);
    });
  });

  describe('CSV', () => {
    const SCHEMA: Schema = { name: 'string', age: 'integer', score: 'number', ok: 'boolean', meta: 'json' };
    const TEXT = [
      'name,age,score,ok,meta',
      '"Smith, J",42,1.5,true,"{""k"":[1,2]}"',
      '"multi',
      'line",-7,-0.25,FALSE,null',
      ',,,,',
      'bob,0,1e3, True ,"""s"""',
      'é😀,9007199254740991,-0,false,[]',
    ].join('\n');
    const WANT = [
      { row: 1, value: { name: 'Smith, J', age: 42, score: 1.5, ok: true, meta: { k: [1, 2] } } },
      { row: 2, value: { name: 'multi\nline', age: -7, score: -0.25, ok: false, meta: null } },
      { row: 3, value: {} },
      { row: 4, value: { name: 'bob', age: 0, score: 1000, ok: true, meta: 's' } },
      { row: 5, value: { name: 'é😀', age: 9007199254740991, score: -0, ok: false, meta: [] } },
    ];

    it('types the cells by the schema, fed in any pieces', async () => {
      for (const { how, pieces } of feedings(TEXT + '\n'))
        assert.deepEqual(await collect(pieces, 'csv', SCHEMA), WANT, how);
    });

    it('reads CRLF line ends, a BOM and a missing final newline', async () => {
      const crlf = TEXT.replace(/\n(?!line)/g, '\r\n');
      for (const { how, pieces } of feedings('\ufeff' + crlf))
        assert.deepEqual(await collect(pieces, 'csv', SCHEMA), WANT, how);
    });

    it('leaves out the fields of empty cells', async () => {
      const got = await collect(['a,b,c\n1,,x\n,2,\n'], 'csv', { a: 'integer', b: 'integer', c: 'string' });
      assert.deepEqual(got, [
        { row: 1, value: { a: 1, c: 'x' } },
        { row: 2, value: { b: 2 } },
      ]);
      assert.ok(!('b' in (got[0].value as object)));
    });

    it('infers types without a schema (codes with leading zeros stay text), and keeps _id a string', async () => {
      assert.deepEqual(await collect(['_id,n,t,zip,e\n007,5,true,00501,\n'], 'csv', undefined), [
        { row: 1, value: { _id: '007', n: 5, t: true, zip: '00501', e: null } },
      ]);
      assert.deepEqual(await collect(['_id,n\n007,5\n'], 'csv', { n: 'integer' }), [
        { row: 1, value: { _id: '007', n: 5 } },
      ]);
    });

    it('rejects a cell that does not fit its type with a 400 naming row and field', async () => {
      const head = 'name,age,score,ok,meta\nann,1,1,true,1\n';
      await rejects400([head + 'bob,1.5,1,true,1\n'], 'csv', /row 2\b.*"age"/, SCHEMA);
      await rejects400([head + 'bob,12x,1,true,1\n'], 'csv', /row 2\b.*"age"/, SCHEMA);
      await rejects400([head + 'bob,9007199254740993,1,true,1\n'], 'csv', /row 2\b.*"age"/, SCHEMA);
      await rejects400([head + 'bob,1,abc,true,1\n'], 'csv', /row 2\b.*"score"/, SCHEMA);
      await rejects400([head + 'bob,1,Infinity,true,1\n'], 'csv', /row 2\b.*"score"/, SCHEMA);
      await rejects400([head + 'bob,1,1,yes,1\n'], 'csv', /row 2\b.*"ok"/, SCHEMA);
      await rejects400([head + 'bob,1,1,true,{bad\n'], 'csv', /row 2\b.*"meta"/, SCHEMA);
    });

    it('rejects ragged rows and unclosed quotes with a 400', async () => {
      await rejects400(['a,b\n1,2\n3,4,5\n'], 'csv', /^row \d+: invalid CSV/, { a: 'integer', b: 'integer' });
      await rejects400(['a,b\n1,2\n3\n'], 'csv', /^row \d+: invalid CSV/, undefined);
      await rejects400(['a,b\n1,"2\n'], 'csv', /^row 1: invalid CSV/, undefined);
    });
    // has taken; csv-parse parses ahead, and its error drops the records it had buffered,
    // so the row named is too small: 'a,b\n1,2\n3,4,5\n' says "row 1" (bad record is 2),
    // and with 5000 good rows before the bad one it says "row 4986" instead of 5001.
    // The CsvError carries `records` (records parsed before the bad one).
    it('names the ragged row itself', async () => {
      await rejects400(['a,b\n1,2\n3,4,5\n'], 'csv', /^row 2\b/, undefined);
      await rejects400(['a,b\n1,2\n5,6\n7,8\n3\n'], 'csv', /^row 4\b/, undefined);
      const body = 'a,b\n' + Array.from({ length: 5000 }, (_, i) => `${i},${i}\n`).join('') + 'x,y,z\n';
      await rejects400([body], 'csv', /^row 5001\b/, undefined);
    });
  });
});
