import { strict as assert } from 'node:assert';
import { makeKeys, NOT_KEYS, type Keys } from '../../common/keys';
import { documentedKeys, patternRegex, renderPattern } from '../support/operations-doc';

describe('docs/operations.md key table', () => {
  const rows = documentedKeys();
  const PREFIX = 'pfx';
  const ARG = 'name1';
  const keys = makeKeys(PREFIX);
  // Every key, channel and key prefix: strings and functions (not `prefix` itself, nor lists such as SCAN patterns).
  const members = (Object.keys(keys) as (keyof Keys)[]).filter(
    (m) => !NOT_KEYS.includes(m) && (typeof keys[m] === 'string' || typeof keys[m] === 'function'),
  );

  it('has a row for every key, channel and key prefix makeKeys() builds', () => {
    for (const m of members)
      assert.ok(
        rows.some((r) => r.member === m),
        `Keys.${m} is missing from the key table of docs/operations.md`,
      );
  });

  it('has no row for a member makeKeys() no longer has', () => {
    for (const r of rows)
      assert.ok(
        (members as string[]).includes(r.member),
        `docs/operations.md documents Keys.${r.member}, which keys.ts does not have`,
      );
  });

  it('spells each key exactly as makeKeys() does', () => {
    for (const m of members) {
      const v = keys[m] as string | ((...ids: string[]) => string);
      const key = typeof v === 'function' ? v(ARG, ARG) : v;
      const row = rows.find((r) => r.member === m)!;
      const rendered = renderPattern(row.pattern, PREFIX, ARG);
      if (row.pattern.endsWith('*')) {
        // A prefix under which a library writes its own keys (BullMQ).
        assert.ok(rendered.startsWith(`${key}:`), `Keys.${m} is ${key}, but the table says ${row.pattern}`);
      } else {
        assert.equal(rendered, key, `Keys.${m}: the table says ${row.pattern}`);
        assert.match(key, patternRegex(row.pattern, PREFIX));
      }
    }
  });

  it('keeps the keys of different names apart (a pattern matches only its own keys)', () => {
    const sample = makeKeys(PREFIX);
    assert.ok(patternRegex('<prefix>:worker:<workerId>:ops', PREFIX).test(sample.workerOps('w9')));
    assert.ok(!patternRegex('<prefix>:worker:<workerId>:ops', PREFIX).test(sample.workerChunks('w9')));
    assert.ok(patternRegex('<prefix>:bull:<queue>:*', PREFIX).test(`${PREFIX}:bull:repair:meta`));
    assert.ok(!patternRegex('<prefix>:bull:<queue>:*', PREFIX).test(`${PREFIX}:bull:repair`));
  });
});
