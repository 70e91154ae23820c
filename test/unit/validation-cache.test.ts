import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { getMetadataStorage, IsInt, IsString, Matches, Min, validateSync } from 'class-validator';
import { MessageError } from '../../common/errors';
import { build, decodeFetch, encodeFetch, FetchMessage } from '../../common/messages';
import { cacheValidationMetadata } from '../../common/messages/validation-cache';

/**
 * class-validator's rules are resolved once per class (common/messages/validation-cache.ts):
 * what is checked must not change, only how often the rules are looked up.
 */

const fetchProps = {
  req: '0f1e2d3c-1111-2222-3333-444455556666',
  worker: 'w1',
  replyTo: 'dstore:coord:{c1}:replies',
  table: 'bench',
  chunks: ['01M8NERS7NKHPV029VTJC836KH'],
  timeoutMs: 60_000,
  where: { amount: { $gte: 5000 } },
  limit: 100,
};

const opts = { forbidUnknownValues: true, validationError: { target: false, value: false } };

function props(errors: ReturnType<typeof validateSync>): string[] {
  return errors.map((e) => e.property).sort();
}

describe('class-validator rules, resolved once per class', () => {
  before(() => cacheValidationMetadata());

  it('a FETCH checked many times still refuses each bad field, naming it', () => {
    for (let i = 0; i < 50; i++) build(FetchMessage, fetchProps);
    const bad: [Partial<typeof fetchProps>, string][] = [
      [{ timeoutMs: 0 }, 'timeoutMs'],
      [{ worker: 'w 1' }, 'worker'],
      [{ req: '' }, 'req'],
      [{ limit: -1 }, 'limit'],
    ];
    for (const [change, field] of bad)
      assert.throws(
        () => build(FetchMessage, { ...fetchProps, ...change }),
        (e: unknown) => e instanceof MessageError && e.message.includes(`${field}:`),
        field,
      );
    // Decoding checks the same rules.
    const fields = JSON.parse(encodeFetch(build(FetchMessage, fetchProps))) as Record<string, string>;
    assert.throws(() => decodeFetch(JSON.stringify({ ...fields, timeoutMs: '0' })), /timeoutMs/);
    const back = decodeFetch(encodeFetch(build(FetchMessage, fetchProps)));
    assert.ok(back instanceof FetchMessage && back.limit === 100);
  });

  it('keeps inherited rules, and a class declared after the first check gets its own', () => {
    class Base {
      @IsString() name!: unknown;
    }
    class Child extends Base {
      @IsInt() @Min(1) n!: unknown;
    }
    const child = Object.assign(new Child(), { name: 'a', n: 2 });
    assert.deepEqual(validateSync(child, opts), []);
    assert.deepEqual(props(validateSync(Object.assign(new Child(), { name: 1, n: 0 }), opts)), ['n', 'name']);
    assert.deepEqual(props(validateSync(Object.assign(new Base(), { name: 1 }), opts)), ['name']);
    // Declared now, after Base's and Child's rules were resolved and cached.
    class Later extends Base {
      @Matches(/^x/) code!: unknown;
    }
    assert.deepEqual(props(validateSync(Object.assign(new Later(), { name: 1, code: 'y' }), opts)), ['code', 'name']);
    assert.deepEqual(props(validateSync(Object.assign(new Child(), { name: 'a', n: 0 }), opts)), ['n']);
  });

  it('checks with groups as class-validator does, uncached', () => {
    class Grouped {
      @IsInt({ groups: ['strict'] }) n!: unknown;
      @IsString() s!: unknown;
    }
    const o = Object.assign(new Grouped(), { n: 'x', s: 5 });
    // Without groups every rule applies; with them, only the rules of those groups.
    assert.deepEqual(props(validateSync(o, opts)), ['n', 's']);
    assert.deepEqual(props(validateSync(o, { ...opts, groups: ['strict'] })), ['n']);
    assert.deepEqual(props(validateSync(o, opts)), ['n', 's']);
  });

  it('answers the same rules for a class from the second lookup on', () => {
    const storage = getMetadataStorage();
    const first = storage.getTargetValidationMetadatas(FetchMessage, '', false, false);
    assert.ok(first.length > 0);
    assert.equal(storage.getTargetValidationMetadatas(FetchMessage, '', false, false), first);
  });
});
