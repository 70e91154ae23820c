import * as crypto from 'node:crypto';
import { DIGEST_VERSION } from '../common/messages';

/**
 * The digest of a chunk's rows, independent of their storage order:
 * `d2:<rows>:<16 hex digits>`, the first 8 bytes of SHA-1 over the rows sorted by `_id`,
 * each `<_id>\0<stored JSON>\n`. Two replicas holding the same rows have the same digest.
 *
 * Why one hash per chunk: the first version (`<rows>:<hex>`, no prefix) summed one SHA-1
 * per row, and at ~1 µs a call the digest cost more than the row's INSERT; sorting a
 * chunk's ids and hashing its text in one call costs ~0.35 µs a row. Shards written with
 * the first version are re-digested when opened (shard-migrations.ts, version 4).
 */
export class ChunkDigest {
  private readonly ids: string[] = [];
  private readonly docs: string[] = [];

  /** Rows added so far. */
  get rows(): number {
    return this.ids.length;
  }

  add(id: string, doc: string): this {
    this.ids.push(id);
    this.docs.push(doc);
    return this;
  }

  toString(): string {
    const n = this.ids.length;
    if (n === 0) return `${DIGEST_VERSION}:0:0000000000000000`;
    const order = Array.from({ length: n }, (_, i) => i);
    // `_id`s are unique in a table, so this order is total; UTF-16 order, the same everywhere.
    order.sort((a, b) => (this.ids[a] < this.ids[b] ? -1 : 1));
    let text = '';
    for (const i of order) text += `${this.ids[i]}\0${this.docs[i]}\n`;
    const hex = crypto.hash('sha1', text, 'hex').slice(0, 16);
    return `${DIGEST_VERSION}:${n}:${hex}`;
  }
}
