import * as crypto from 'node:crypto';

const MASK = (1n << 64n) - 1n;

/**
 * An order-independent digest of a chunk's rows: the sum, modulo 2^64, of the first 8
 * bytes of SHA-1 over each row's `_id` and stored JSON text. Two replicas holding the
 * same rows have the same digest whatever their storage order.
 */
export class ChunkDigest {
  private sum = 0n;
  rows = 0;

  add(id: string, doc: string): this {
    const h = crypto.createHash('sha1').update(id).update('\0').update(doc).digest();
    this.sum = (this.sum + h.readBigUInt64BE(0)) & MASK;
    this.rows++;
    return this;
  }

  /** `<rows>:<16 hex digits>` */
  toString(): string {
    return `${this.rows}:${this.sum.toString(16).padStart(16, '0')}`;
  }
}
