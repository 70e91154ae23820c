import { ConfigError } from '../common/errors';
import { DecryptError, FieldCipher } from '../common/field-crypto';
import { filterFields, FilterError } from '../common/filter';
import { aggregateName, type QuerySpec } from '../common/query';
import type { TableDef } from './table-def';
import { ApiError, badRequest } from './errors';

/**
 * Encrypted columns at the coordinator: values are encrypted before they enter Redis
 * (POST rows, UPDATE `set`) and decrypted on the way out of every read, so Redis and the
 * workers' SQLite files only ever hold `enc:v1:…` strings. Queries that would need the
 * workers to compare encrypted values (filter, sort, group, aggregate) are refused.
 */
export class TableEncryption {
  private readonly cipher?: FieldCipher;

  constructor(key: Buffer | undefined) {
    this.cipher = key ? new FieldCipher(key) : undefined;
  }

  /** The key check value of this coordinator's key (an HMAC, not the key); undefined without one. */
  get keyCheck(): string | undefined {
    return this.cipher?.keyCheck;
  }

  /** Whether this coordinator has a key. */
  get enabled(): boolean {
    return this.cipher !== undefined;
  }

  /** The key check value stored with a new table that has `encrypted` columns (none: undefined); 500 without a key. */
  keyCheckFor(table: string, encrypted: readonly string[]): string | undefined {
    if (encrypted.length === 0) return undefined;
    if (!this.cipher) throw missingKey(table, 'create');
    return this.cipher.keyCheck;
  }

  /**
   * The table's cipher, or undefined when it has no encrypted columns. Refuses (500) when
   * this coordinator has no key or another key than the one the table was created with.
   */
  cipherFor(def: TableDef, use = 'read or write'): FieldCipher | undefined {
    if (!def.encrypted?.length) return undefined;
    if (!this.cipher) throw missingKey(def.name, use);
    if (def.keyCheck !== this.cipher.keyCheck) {
      throw new ApiError(
        500,
        'encryption_key_mismatch',
        `table ${def.name} was created with another DSTORE_ENCRYPTION_KEY than this coordinator's; refusing to ${use} it. Start the coordinator with the key the table was created with`,
        { table: def.name },
      );
    }
    return this.cipher;
  }

  /**
   * At start: every table with encrypted columns must have been created with this key.
   * A coordinator with a wrong key stops here instead of failing each request.
   */
  checkCatalogue(tables: readonly TableDef[]): void {
    if (!this.cipher) return;
    const wrong = tables.filter((t) => t.encrypted?.length && t.keyCheck !== this.cipher!.keyCheck).map((t) => t.name);
    if (wrong.length > 0) {
      throw new ConfigError(
        'DSTORE_ENCRYPTION_KEY',
        `is not the key table(s) ${wrong.join(', ')} were created with (their key check value differs); start with the key those tables were created with`,
      );
    }
  }

  /** Encrypts the encrypted columns of one row in place (null stays null: it holds no value to hide). */
  encryptRow(def: TableDef, cipher: FieldCipher, row: Record<string, unknown>): void {
    for (const c of def.encrypted!) {
      const v = row[c];
      if (v !== undefined && v !== null) row[c] = cipher.encrypt(def.name, c, v);
    }
  }

  /** Decrypts the encrypted columns of one parsed row in place. */
  decryptRow(def: TableDef, cipher: FieldCipher, row: Record<string, unknown>): Record<string, unknown> {
    for (const c of def.encrypted!) {
      const v = row[c];
      if (v === undefined || v === null) continue;
      try {
        row[c] = cipher.decrypt(def.name, c, v);
      } catch (e) {
        if (e instanceof DecryptError)
          throw new ApiError(
            500,
            'decrypt_failed',
            `${e.message}; no rows are returned in clear from a value that fails to decrypt`,
            { table: def.name, field: c },
          );
        throw e;
      }
    }
    return row;
  }

  /** Refuses a query that filters, sorts, groups or aggregates on an encrypted column, or projects inside one. */
  checkQuery(def: TableDef, q: QuerySpec): void {
    if (!def.encrypted?.length) return;
    const enc = new Set(def.encrypted);
    const top = (f: string) => f.split('.')[0];
    this.checkWhere(def, q.where);
    // With aggregates a sort key may be an output column (`as`), which holds no stored value.
    const outputs = new Set((q.aggregate ?? []).map(aggregateName));
    q.sort?.forEach(
      (s, i) => !outputs.has(s.field) && enc.has(top(s.field)) && refuse(def, top(s.field), `sort[${i}]`, 'sort on'),
    );
    q.groupBy?.forEach((f, i) => enc.has(top(f)) && refuse(def, top(f), `groupBy[${i}]`, 'group by'));
    q.aggregate?.forEach(
      (a, i) =>
        a.field !== undefined &&
        enc.has(top(a.field)) &&
        refuse(def, top(a.field), `aggregate[${i}].field`, `${a.op}() over`),
    );
    q.fields?.forEach((f, i) => {
      if (f.includes('.') && enc.has(top(f))) {
        throw badRequest(
          `fields[${i}]: ${JSON.stringify(f)} reaches inside encrypted column ${JSON.stringify(top(f))}; the workers only hold its ciphertext. Ask for the whole column ("${top(f)}")`,
          {
            field: `fields[${i}]`,
          },
        );
      }
    });
  }

  /** Refuses a filter (query, UPDATE, DELETE) that reads an encrypted column. */
  checkWhere(def: TableDef, where: unknown, label = 'where'): void {
    if (!def.encrypted?.length || where === undefined || where === null) return;
    let fields: string[];
    try {
      fields = filterFields(where, label);
    } catch (e) {
      if (e instanceof FilterError) return; // reported by the caller's own check, with its status
      throw e;
    }
    const enc = new Set(def.encrypted);
    for (const f of fields) if (enc.has(f.split('.')[0])) refuse(def, f.split('.')[0], label, 'filter on');
  }

  /** Encrypts an UPDATE `set` (a new object); a path inside an encrypted column is refused. */
  encryptSet(def: TableDef, cipher: FieldCipher, set: Record<string, unknown>): Record<string, unknown> {
    const enc = new Set(def.encrypted);
    const out: Record<string, unknown> = {};
    for (const [f, v] of Object.entries(set)) {
      const top = f.split('.')[0];
      if (enc.has(top) && f !== top) {
        throw badRequest(
          `set: ${JSON.stringify(f)} reaches inside encrypted column ${JSON.stringify(top)}; set the whole column instead`,
          { field: `set.${f}` },
        );
      }
      out[f] = enc.has(f) && v !== null && v !== undefined ? cipher.encrypt(def.name, f, v) : v;
    }
    return out;
  }
}

function missingKey(table: string, use: string): ApiError {
  return new ApiError(
    500,
    'encryption_key_missing',
    `table ${table} has encrypted columns but this coordinator has no DSTORE_ENCRYPTION_KEY; refusing to ${use} it. Start the coordinator with DSTORE_ENCRYPTION_KEY set (32 random bytes as base64, e.g. openssl rand -base64 32)`,
    { table },
  );
}

function refuse(def: TableDef, column: string, at: string, what: string): never {
  throw badRequest(
    `${at}: cannot ${what} ${JSON.stringify(column)}: it is an encrypted column of table ${def.name}. Its values are encrypted with a fresh random nonce each, so the workers cannot compare them (deterministic encryption would allow equality filters but leak which rows are equal, so dstore does not use it). Filter, sort and group on other columns, or read the rows and filter them yourself`,
    { field: at, column, reason: 'encrypted_column' },
  );
}
