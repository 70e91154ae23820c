import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import { loadCoordinatorOptions } from '../../common/config';
import { ConfigError } from '../../common/errors';
import { DecryptError, ENCRYPTED_PREFIX, FieldCipher, parseEncryptionKey } from '../../common/field-crypto';
import { filterFields } from '../../common/filter';
import type { TableDef } from '../../coordinator/table-def';
import { TableEncryption } from '../../coordinator/encryption';
import { ApiError } from '../../coordinator/errors';
import { parseSchema, parseTableSchema } from '../../coordinator/schema';

const KEY = crypto.randomBytes(32);

/** Flips one bit of the decoded payload at `index` (negative: from the end) and re-encodes it. */
function flip(stored: string, index: number): string {
  const raw = Buffer.from(stored.slice(ENCRYPTED_PREFIX.length), 'base64');
  raw[index < 0 ? raw.length + index : index] ^= 1;
  return ENCRYPTED_PREFIX + raw.toString('base64');
}

describe('field encryption', () => {
  describe('FieldCipher', () => {
    const c = new FieldCipher(KEY);

    it('round-trips every JSON value exactly', () => {
      for (const v of [
        '',
        'Ada Lovelace',
        'ünïcødé ✓ \u2028 "quoted" \\ \n',
        0,
        -1.5e-300,
        Number.MAX_SAFE_INTEGER,
        true,
        false,
        { a: [1, { b: null }] },
        [1, 'x'],
      ]) {
        const s = c.encrypt('people', 'ssn', v);
        assert.ok(s.startsWith(ENCRYPTED_PREFIX));
        assert.deepEqual(c.decrypt('people', 'ssn', s), v);
      }
    });

    it('never stores the clear text', () => {
      const s = c.encrypt('people', 'name', 'Grace Hopper');
      assert.ok(!s.includes('Grace'));
      assert.ok(!Buffer.from(s.slice(ENCRYPTED_PREFIX.length), 'base64').includes('Grace'));
    });

    it('uses a fresh nonce per call: equal values give different ciphertexts', () => {
      const seen = new Set<string>();
      const nonces = new Set<string>();
      for (let i = 0; i < 200; i++) {
        const s = c.encrypt('t', 'c', 'same');
        seen.add(s);
        nonces.add(Buffer.from(s.slice(ENCRYPTED_PREFIX.length), 'base64').subarray(0, 12).toString('hex'));
      }
      assert.equal(seen.size, 200);
      assert.equal(nonces.size, 200);
    });

    it('refuses a tampered value: nonce, tag or ciphertext changed', () => {
      const s = c.encrypt('t', 'c', 'secret value');
      for (const at of [0, 11, 12, 27, 28, -1])
        assert.throws(() => c.decrypt('t', 'c', flip(s, at)), DecryptError, `bit flipped at ${at}`);
      assert.throws(() => c.decrypt('t', 'c', s.slice(0, 20)), DecryptError);
    });

    it('refuses a value moved to another column or table (AAD)', () => {
      const s = c.encrypt('people', 'ssn', '078-05-1120');
      assert.throws(() => c.decrypt('people', 'name', s), /failed authentication/);
      assert.throws(() => c.decrypt('other', 'ssn', s), /failed authentication/);
      // Names are bound unambiguously: moving a separator does not make another valid pair.
      const t = c.encrypt('a', 'b.c', 1);
      assert.throws(() => c.decrypt('a.b', 'c', t), DecryptError);
    });

    it('refuses a value under another key', () => {
      const other = new FieldCipher(crypto.randomBytes(32));
      assert.throws(() => other.decrypt('t', 'c', c.encrypt('t', 'c', 'x')), /another DSTORE_ENCRYPTION_KEY/);
    });

    it('refuses a value that is not encrypted', () => {
      for (const v of ['plain', 42, { a: 1 }]) assert.throws(() => c.decrypt('t', 'c', v), /not encrypted/);
    });

    it('has a key check value that identifies the key and is not the key', () => {
      assert.equal(new FieldCipher(Buffer.from(KEY)).keyCheck, c.keyCheck);
      assert.notEqual(new FieldCipher(crypto.randomBytes(32)).keyCheck, c.keyCheck);
      assert.ok(!c.keyCheck.includes(KEY.toString('hex').slice(0, 8)));
    });
  });

  describe('DSTORE_ENCRYPTION_KEY', () => {
    it('takes 32 bytes as hex, base64 or base64url', () => {
      assert.deepEqual(parseEncryptionKey(KEY.toString('hex')), KEY);
      assert.deepEqual(parseEncryptionKey(KEY.toString('base64')), KEY);
      assert.deepEqual(parseEncryptionKey(KEY.toString('base64url')), KEY);
      assert.deepEqual(parseEncryptionKey(` ${KEY.toString('base64')}\n`), KEY);
    });

    it('refuses other lengths and text with a ConfigError naming the variable, without echoing it', () => {
      for (const bad of [
        crypto.randomBytes(16).toString('base64'),
        crypto.randomBytes(33).toString('hex'),
        'correct horse battery staple!',
        'not-a-key!!',
      ]) {
        assert.throws(
          () => loadCoordinatorOptions({ DSTORE_ENCRYPTION_KEY: bad }),
          (e: unknown) =>
            e instanceof ConfigError &&
            e.variable === 'DSTORE_ENCRYPTION_KEY' &&
            !e.message.includes(bad) &&
            /openssl rand -base64 32/.test(e.message),
        );
      }
    });

    it('is optional', () => {
      assert.equal(loadCoordinatorOptions({}).encryptionKey, undefined);
      assert.deepEqual(loadCoordinatorOptions({ DSTORE_ENCRYPTION_KEY: KEY.toString('base64') }).encryptionKey, KEY);
    });
  });

  describe('schema with encrypted columns', () => {
    it('reads :encrypted in the text form and both object forms', () => {
      assert.deepEqual(parseTableSchema('name:string:encrypted, age:integer, ssn:string:encrypted'), {
        schema: { name: 'string', age: 'integer', ssn: 'string' },
        encrypted: ['name', 'ssn'],
      });
      assert.deepEqual(
        parseTableSchema({ a: 'json:encrypted', b: { type: 'integer', encrypted: true }, c: { type: 'number' } }),
        {
          schema: { a: 'json', b: 'integer', c: 'number' },
          encrypted: ['a', 'b'],
        },
      );
      // Column names may hold colons; the type is the last segment before :encrypted.
      assert.deepEqual(parseTableSchema('time:of:day:string:encrypted'), {
        schema: { 'time:of:day': 'string' },
        encrypted: ['time:of:day'],
      });
      assert.deepEqual(parseSchema('a:string:encrypted'), { a: 'string' });
    });

    it('refuses an encrypted _id, a bad type and a bad object form', () => {
      assert.throws(() => parseTableSchema('_id:string:encrypted'), /"_id" cannot be encrypted/);
      assert.throws(() => parseTableSchema('a:encrypted'), /must be column:type/);
      assert.throws(() => parseTableSchema({ a: 'float:encrypted' }), /"float"/);
      assert.throws(() => parseTableSchema({ a: { type: 'string', encrypted: 'yes' } }), /"type:encrypted"/);
      assert.throws(() => parseTableSchema({ a: { type: 'string', secret: true } }), /"type:encrypted"/);
    });
  });

  describe('TableEncryption', () => {
    const enc = new TableEncryption(KEY);
    const def: TableDef = {
      name: 'people',
      schema: { name: 'string', ssn: 'string', age: 'integer' },
      encrypted: ['ssn'],
      keyCheck: new FieldCipher(KEY).keyCheck,
      version: 1,
      createdAt: 0,
    };
    const status = (fn: () => unknown, code: number, re: RegExp) =>
      assert.throws(fn, (e: unknown) => e instanceof ApiError && e.status === code && re.test(e.message));

    it('lists the fields of a filter', () => {
      assert.deepEqual(
        filterFields({ $or: [{ a: 1 }, { 'b.c': { $gt: 2 } }], $not: { d: { $exists: true } } }).sort(),
        ['a', 'b.c', 'd'],
      );
      assert.deepEqual(filterFields({}), []);
    });

    it('refuses filter, sort, group, aggregate and nested projection on an encrypted column with a 400 that says why', () => {
      status(() => enc.checkQuery(def, { where: { ssn: 'x' } }), 400, /cannot filter on "ssn".*fresh random nonce/);
      status(
        () => enc.checkQuery(def, { where: { $and: [{ age: 1 }, { $not: { 'ssn.x': { $exists: true } } }] } }),
        400,
        /encrypted column/,
      );
      status(
        () => enc.checkQuery(def, { sort: [{ field: 'ssn', dir: 'asc' }] }),
        400,
        /sort\[0\]: cannot sort on "ssn"/,
      );
      status(() => enc.checkQuery(def, { groupBy: ['ssn'], aggregate: [{ op: 'count' }] }), 400, /group by/);
      status(() => enc.checkQuery(def, { aggregate: [{ op: 'max', field: 'ssn' }] }), 400, /max\(\) over "ssn"/);
      status(() => enc.checkQuery(def, { fields: ['ssn.area'] }), 400, /reaches inside encrypted column/);
      enc.checkQuery(def, {
        where: { age: { $gt: 1 } },
        fields: ['ssn', 'name'],
        sort: [{ field: 'name', dir: 'desc' }],
      });
      enc.checkQuery(def, { groupBy: ['name'], aggregate: [{ op: 'count' }, { op: 'sum', field: 'age' }] });
      enc.checkQuery(def, {
        groupBy: ['name'],
        aggregate: [{ op: 'count', as: 'ssn' }],
        sort: [{ field: 'ssn', dir: 'desc' }],
      });
    });

    it('encrypts an UPDATE set, refusing paths inside an encrypted column', () => {
      const c = enc.cipherFor(def)!;
      const set = enc.encryptSet(def, c, { ssn: 'new', name: 'clear' });
      assert.equal(set.name, 'clear');
      assert.equal(c.decrypt('people', 'ssn', set.ssn), 'new');
      status(() => enc.encryptSet(def, c, { 'ssn.x': 1 }), 400, /reaches inside/);
    });

    it('refuses without a key and with another key, naming DSTORE_ENCRYPTION_KEY', () => {
      status(
        () => new TableEncryption(undefined).cipherFor(def, 'read'),
        500,
        /no DSTORE_ENCRYPTION_KEY; refusing to read/,
      );
      status(() => new TableEncryption(undefined).keyCheckFor('people', ['ssn']), 500, /DSTORE_ENCRYPTION_KEY/);
      status(
        () => new TableEncryption(crypto.randomBytes(32)).cipherFor(def, 'read'),
        500,
        /another DSTORE_ENCRYPTION_KEY/,
      );
      assert.throws(
        () => new TableEncryption(crypto.randomBytes(32)).checkCatalogue([def]),
        (e: unknown) => e instanceof ConfigError && /people/.test(e.message),
      );
      new TableEncryption(KEY).checkCatalogue([def]);
      assert.equal(new TableEncryption(undefined).cipherFor({ ...def, encrypted: undefined }), undefined);
    });

    it('fails a row whose value does not decrypt instead of returning it', () => {
      const c = enc.cipherFor(def)!;
      const row = { _id: '1', ssn: c.encrypt('people', 'name', 'moved') };
      status(() => enc.decryptRow(def, c, row), 500, /failed authentication/);
    });
  });
});
