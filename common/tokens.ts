import * as crypto from 'node:crypto';
import { ConfigError } from './errors';

/**
 * API tokens: `name:secret:role`, from `DSTORE_TOKENS` (comma-separated) and/or
 * `DSTORE_TOKENS_FILE` (one a line, `#` comments). Only a SHA-256 digest of each secret
 * is kept in memory, and a presented secret is compared against every digest in
 * constant time, so neither the timing nor a heap dump gives a secret away.
 */

/** What a token may do; each role includes the ones before it. */
export const ROLES = ['read', 'write', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** One configured token, without its secret. */
export interface ApiToken {
  name: string;
  role: Role;
  /** SHA-256 of the secret. */
  digest: Buffer;
}

/** Secrets shorter than this are refused: a token is a password that is never typed. */
export const MIN_SECRET_LENGTH = 16;

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Whether `have` includes the rights of `need`. */
export function roleAllows(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

function digest(secret: string): Buffer {
  return crypto.createHash('sha256').update(secret, 'utf8').digest();
}

/**
 * Parses `name:secret:role` entries. `source` names where they came from in errors
 * (the variable, or `DSTORE_TOKENS_FILE line 3`); a secret never appears in a message.
 */
export function parseTokenEntries(entries: { text: string; where: string }[], variable: string): ApiToken[] {
  const out: ApiToken[] = [];
  for (const { text, where } of entries) {
    const parts = text.split(':');
    if (parts.length !== 3)
      throw new ConfigError(variable, `${where}: a token must be name:secret:role (read, write or admin)`);
    const [name, secret, role] = parts.map((p) => p.trim());
    if (!NAME.test(name))
      throw new ConfigError(
        variable,
        `${where}: token name ${JSON.stringify(name)} must be 1-64 letters, digits, "_", "." or "-"`,
      );
    if (secret.length < MIN_SECRET_LENGTH) {
      throw new ConfigError(
        variable,
        `${where}: the secret of token ${name} is shorter than ${MIN_SECRET_LENGTH} characters; generate one with: openssl rand -hex 24`,
      );
    }
    if (!ROLES.includes(role as Role))
      throw new ConfigError(
        variable,
        `${where}: token ${name} has role ${JSON.stringify(role)}; use read, write or admin`,
      );
    if (out.some((t) => t.name === name)) throw new ConfigError(variable, `${where}: token name ${name} is used twice`);
    out.push({ name, role: role as Role, digest: digest(secret) });
  }
  return out;
}

/**
 * The token whose secret is `secret`, or undefined. Every configured token is compared
 * (no early exit), each with `timingSafeEqual` over equal-length digests.
 */
export function findToken(tokens: readonly ApiToken[], secret: string): ApiToken | undefined {
  const d = digest(secret);
  let found: ApiToken | undefined;
  for (const t of tokens) if (crypto.timingSafeEqual(t.digest, d) && !found) found = t;
  return found;
}
