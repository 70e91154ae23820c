import type { ChangeRetention } from '../common/changes';
import type { TableIndexes } from '../common/indexes';
import type { Schema } from './schema';

/** A table as the catalogue holds it (`<prefix>:tables`, one JSON value per table). */
export interface TableDef {
  name: string;
  schema?: Schema;
  /** Columns stored encrypted (docs/security.md); absent when none. */
  encrypted?: string[];
  /** Identifies the DSTORE_ENCRYPTION_KEY the table was created with (an HMAC, not the key); set with `encrypted`. */
  keyCheck?: string;
  /**
   * Values of columns added with a default (PATCH /tables/:name): a row stored without the
   * column gets it, and rows stored before the change were given it.
   */
  defaults?: Record<string, unknown>;
  version: number;
  /** On when present: the table's committed writes go to its change stream, kept as this says (common/changes.ts). */
  changes?: ChangeRetention;
  /** Secondary indexes (common/indexes.ts); absent until the first is created. */
  indexes?: TableIndexes;
  createdAt: number;
}
