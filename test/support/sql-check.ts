import { strict as assert } from 'node:assert';

// Everything compiled filter SQL may contain: no user text can survive this tokenizer.
const TOKEN = /\s+|<=|>=|[()?,=<>]|'(?:\$|integer|real|text|null|true|false)'|[A-Za-z_]+|[01]/y;
const WORDS = new Set(
  'CASE WHEN THEN ELSE END AND OR NOT IN IS NULL SELECT FROM value json_type json_extract json_each doc _id IFNULL'.split(
    ' ',
  ),
);

/**
 * Fails unless `sql` is made only of the fixed vocabulary compileFilter uses (keywords,
 * operators, `?` placeholders, a few type literals): user text may only travel as bound
 * parameters.
 */
export function assertOnlyFixedSql(sql: string): void {
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < sql.length) {
    const at = TOKEN.lastIndex;
    const m = TOKEN.exec(sql);
    assert.ok(m, `unexpected text in SQL at ${at}: ${sql.slice(at, at + 40)}`);
    if (/^[A-Za-z_]+$/.test(m[0])) assert.ok(WORDS.has(m[0]), `unexpected word ${m[0]} in SQL`);
  }
}
