import * as crypto from 'node:crypto';

/**
 * An order-independent digest of a chunk's rows: the sum, modulo 2^64, of the first 8
 * bytes of SHA-1 over each row's `_id` and stored JSON text. Two replicas holding the
 * same rows have the same digest whatever their storage order.
 */
export class ChunkDigest {
  // The 64-bit sum as two 32-bit halves in plain numbers: no BigInt per row.
  private hi = 0;
  private lo = 0;
  rows = 0;

  add(id: string, doc: string): this {
    // One-shot crypto.hash (no Hash object per row) over the same bytes as before.
    const h = crypto.hash('sha1', `${id}\0${doc}`, 'buffer');
    const lo = this.lo + h.readUInt32BE(4);
    this.lo = lo >>> 0;
    this.hi = (this.hi + h.readUInt32BE(0) + (lo > 0xffffffff ? 1 : 0)) >>> 0;
    this.rows++;
    return this;
  }

  /** `<rows>:<16 hex digits>` */
  toString(): string {
    return `${this.rows}:${this.hi.toString(16).padStart(8, '0')}${this.lo.toString(16).padStart(8, '0')}`;
  }
}
