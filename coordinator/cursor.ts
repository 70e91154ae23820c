import * as crypto from 'node:crypto';
import type { Keys } from '../common/keys';
import type { QuerySpec } from '../common/query';
import type { DstoreRedis } from '../common/redis';
import type { SqlValue } from '../common/sqlite-order';
import { ApiError } from './errors';

/** What a cursor holds: the format, the query it belongs to, and where the next page starts. */
interface CursorBody {
  v: 1;
  /** Digest of the table, filter and sort: a cursor continues only the query it came from. */
  q: string;
  /** `[sortKey…, _id]` of the page's last row (QuerySpec.after). */
  a: SqlValue[];
}

const MAX_CURSOR_CHARS = 64 * 1024;

/**
 * Query cursors: opaque, stateless tokens `<body>.<mac>` (base64url), where the body holds the
 * last row's sort keys and `_id` and a digest of the query, and the mac is an HMAC-SHA256 under
 * a random key kept in Redis ({@link Keys.cursorSecret}), so any coordinator of the cluster
 * accepts a cursor another one made, and an edited or forged cursor is a 400.
 */
export class CursorCodec {
  private secret?: Promise<Buffer>;

  constructor(
    private readonly cmd: Pick<DstoreRedis, 'set' | 'get'>,
    private readonly keys: Pick<Keys, 'cursorSecret'>,
  ) {}

  /** The cursor to the page after the row at `after`, for query `q` on `table`. */
  async encode(table: string, q: QuerySpec, after: SqlValue[]): Promise<string> {
    const body: CursorBody = { v: 1, q: digest(table, q), a: after };
    const text = Buffer.from(JSON.stringify(body)).toString('base64url');
    return `${text}.${await this.mac(text)}`;
  }

  /**
   * The keyset position a cursor holds, checked: made by a coordinator of this cluster, not
   * edited, and for this table, filter and sort.
   * @throws {@link ApiError} 400 `bad_cursor` naming `cursor` and what is wrong.
   */
  async decode(table: string, q: QuerySpec, cursor: unknown): Promise<SqlValue[]> {
    if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > MAX_CURSOR_CHARS)
      throw badCursor('must be the string a page ended with in {"_next": "<cursor>"}');
    const dot = cursor.indexOf('.');
    const text = cursor.slice(0, dot);
    const mac = Buffer.from(cursor.slice(dot + 1), 'base64url');
    const want = Buffer.from(await this.mac(text), 'base64url');
    if (dot <= 0 || mac.length !== want.length || !crypto.timingSafeEqual(mac, want))
      throw badCursor('was not made by this cluster or was changed; send back the _next of the page before as it is');
    let body: CursorBody;
    try {
      body = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as CursorBody;
    } catch {
      throw badCursor('cannot be read');
    }
    if (body.v !== 1) throw badCursor(`has format ${String(body.v)}, this coordinator reads format 1`);
    if (body.q !== digest(table, q))
      throw badCursor('belongs to another query: send it with the same table, where and sort as the page it came from');
    return body.a;
  }

  private async mac(text: string): Promise<string> {
    const key = await this.key();
    return crypto.createHmac('sha256', key).update(text).digest().subarray(0, 16).toString('base64url');
  }

  private key(): Promise<Buffer> {
    if (!this.secret) {
      const p = (async () => {
        await this.cmd.set(this.keys.cursorSecret, crypto.randomBytes(32).toString('hex'), 'NX');
        const hex = await this.cmd.get(this.keys.cursorSecret);
        if (!hex) throw new Error(`${this.keys.cursorSecret} is empty after SET NX`);
        return Buffer.from(hex, 'hex');
      })();
      // A failed read (Redis down) is tried again by the next request.
      p.catch(() => (this.secret = undefined));
      this.secret = p;
    }
    return this.secret;
  }
}

function digest(table: string, q: QuerySpec): string {
  return crypto
    .createHash('sha256')
    .update(JSON.stringify([table, q.where ?? null, q.sort ?? []]))
    .digest()
    .subarray(0, 12)
    .toString('base64url');
}

function badCursor(what: string): ApiError {
  return new ApiError(400, 'bad_cursor', `cursor ${what}`, { field: 'cursor' });
}
