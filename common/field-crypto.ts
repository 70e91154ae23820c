import * as crypto from 'node:crypto';
import { ConfigError } from './errors';

/**
 * Field encryption: AES-256-GCM over one column value at a time, with a fresh random
 * 12-byte nonce per value and the 16-byte tag kept. The table and column name are bound
 * as additional authenticated data, so a ciphertext copied into another column (or
 * table) fails to decrypt instead of passing for that column's value. A value is stored
 * as the string `enc:v1:<base64(nonce | tag | ciphertext)>` of the JSON text of the value.
 * Encryption is randomised on purpose: equal values give different ciphertexts, which is
 * why dstore refuses to filter, sort or group on an encrypted column (docs/security.md).
 */

/** Prefix of every encrypted value. */
export const ENCRYPTED_PREFIX = 'enc:v1:';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_CHECK_PREFIX = 'hmac-sha256:';

/** A value failed to decrypt: tampered with, moved between columns, or written under another key. */
export class DecryptError extends Error {
  override readonly name = 'DecryptError';
}

/**
 * Reads `DSTORE_ENCRYPTION_KEY`: 32 bytes as 64 hex digits or as base64 (standard or
 * URL-safe, padding optional). Throws a {@link ConfigError} that never echoes the value.
 */
export function parseEncryptionKey(raw: string, variable = 'DSTORE_ENCRYPTION_KEY'): Buffer {
  const t = raw.trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(t)) key = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) key = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (!key || key.length !== 32) {
    throw new ConfigError(
      variable,
      `must be 32 random bytes written as 64 hex digits or as base64 (got ${t.length} characters${key ? `, ${key.length} bytes` : ''}); make one with: openssl rand -base64 32`,
    );
  }
  return key;
}

/** HKDF-SHA256 subkey of the master key for one purpose, so the key check reveals nothing about the encryption key. */
function subkey(master: Buffer, purpose: string): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', master, Buffer.alloc(0), `dstore ${purpose} v1`, 32));
}

function aad(table: string, column: string): Buffer {
  // JSON of the pair: unambiguous whatever characters the names hold.
  return Buffer.from(JSON.stringify(['dstore-field', table, column]));
}

// Nonces are cut from a pool of CSPRNG output, refilled when used up: one randomFillSync per
// 512 values instead of a randomBytes call per value (which cost as much as the AES itself).
const NONCE_POOL = Buffer.alloc(NONCE_BYTES * 512);
let noncePos = NONCE_POOL.length;

function nextNonce(): Buffer {
  if (noncePos + NONCE_BYTES > NONCE_POOL.length) {
    crypto.randomFillSync(NONCE_POOL);
    noncePos = 0;
  }
  const n = NONCE_POOL.subarray(noncePos, noncePos + NONCE_BYTES);
  noncePos += NONCE_BYTES;
  return n;
}

/** Encrypts and decrypts column values under one master key. */
export class FieldCipher {
  private readonly encKey: Buffer;
  /**
   * A value that identifies the key without revealing it: an HMAC of a constant under a
   * subkey of its own. Stored with a table that has encrypted columns; a coordinator
   * whose key gives another value holds the wrong key.
   */
  readonly keyCheck: string;
  /** AAD per table, per column: built once, not per value. */
  private readonly aads = new Map<string, Map<string, Buffer>>();

  constructor(masterKey: Buffer) {
    if (masterKey.length !== 32) throw new Error(`an encryption key is 32 bytes, got ${masterKey.length}`);
    this.encKey = subkey(masterKey, 'field encryption');
    const mac = crypto.createHmac('sha256', subkey(masterKey, 'key check')).update('dstore key check').digest();
    this.keyCheck = KEY_CHECK_PREFIX + mac.subarray(0, 16).toString('hex');
  }

  private aadOf(table: string, column: string): Buffer {
    let cols = this.aads.get(table);
    if (!cols) this.aads.set(table, (cols = new Map()));
    let a = cols.get(column);
    if (!a) cols.set(column, (a = aad(table, column)));
    return a;
  }

  /** Encrypts one value (any JSON value) of `table.column` under a fresh random nonce. */
  encrypt(table: string, column: string, value: unknown): string {
    const nonce = nextNonce();
    const c = crypto.createCipheriv('aes-256-gcm', this.encKey, nonce, { authTagLength: TAG_BYTES });
    c.setAAD(this.aadOf(table, column));
    const body = c.update(JSON.stringify(value), 'utf8');
    const last = c.final();
    // The pool slice is copied here, before the pool is refilled.
    return ENCRYPTED_PREFIX + Buffer.concat([nonce, c.getAuthTag(), body, last]).toString('base64');
  }

  /**
   * Decrypts one value of `table.column`; throws {@link DecryptError} when it is not an intact value of that column
   * under this key.
   */
  decrypt(table: string, column: string, stored: unknown): unknown {
    if (typeof stored !== 'string' || !stored.startsWith(ENCRYPTED_PREFIX)) {
      throw new DecryptError(
        `${table}.${column} holds a value that is not encrypted (${stored === null ? 'null' : typeof stored}); it was not written through a coordinator with DSTORE_ENCRYPTION_KEY`,
      );
    }
    const raw = Buffer.from(stored.slice(ENCRYPTED_PREFIX.length), 'base64');
    if (raw.length < NONCE_BYTES + TAG_BYTES)
      throw new DecryptError(`${table}.${column} holds a truncated encrypted value`);
    const d = crypto.createDecipheriv('aes-256-gcm', this.encKey, raw.subarray(0, NONCE_BYTES), {
      authTagLength: TAG_BYTES,
    });
    d.setAAD(this.aadOf(table, column));
    d.setAuthTag(raw.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES));
    let text: string;
    try {
      text = Buffer.concat([d.update(raw.subarray(NONCE_BYTES + TAG_BYTES)), d.final()]).toString('utf8');
    } catch {
      throw new DecryptError(
        `a value of ${table}.${column} failed authentication: it was changed, moved from another column, or encrypted under another DSTORE_ENCRYPTION_KEY`,
      );
    }
    return JSON.parse(text);
  }
}
