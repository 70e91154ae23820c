import { badRequest, conflict } from './errors';
import { checkRow, parseTableSchema, type Schema } from './schema';
import type { TableDef } from './table-def';
import { parseChanges } from '../common/changes';

/** What a schema change ({@link planAlter}) does: the new definition and the rows change. */
export interface AlterPlan {
  /** The table's new definition (version + 1). */
  table: TableDef;
  added: string[];
  dropped: string[];
  /** Column → default, set on every stored row that lacks the column. */
  fill: Record<string, unknown>;
  /** Columns removed from every stored row. */
  unset: string[];
}

const KEYS = new Set(['addColumns', 'dropColumns', 'changes']);

/**
 * Checks a `PATCH /tables/:name` body against the table and returns the plan: `addColumns`
 * `{"col": "type"}` or `{"col": {"type": "integer", "default": 0}}`, `dropColumns`
 * `["col"]`, and `changes` (true, false or a retention: common/changes.ts). Only typed tables
 * have columns to change; `_id`, a column an index uses, and an
 * encrypted column to be added are refused, each with a message naming the field.
 */
export function planAlter(def: TableDef, body: unknown): AlterPlan {
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw badRequest('body must be a JSON object {"addColumns": {"col": "type"}, "dropColumns": ["col"]}');
  const b = body as Record<string, unknown>;
  const unknownKey = Object.keys(b).find((k) => !KEYS.has(k));
  if (unknownKey !== undefined)
    throw badRequest(`unknown key ${JSON.stringify(unknownKey)}; a table change takes addColumns and dropColumns`, {
      field: unknownKey,
    });
  let changes = def.changes;
  if ('changes' in b) {
    try {
      changes = parseChanges(b.changes) || undefined;
    } catch (e) {
      throw badRequest(`changes: ${(e as Error).message}`, { field: 'changes' });
    }
  }
  const withChanges = (t: TableDef): TableDef => {
    if (changes) t.changes = changes;
    else delete t.changes;
    return t;
  };
  if (!('addColumns' in b) && !('dropColumns' in b)) {
    if (!('changes' in b))
      throw badRequest('nothing to change: give addColumns, dropColumns or changes', { field: 'addColumns' });
    return { table: withChanges({ ...def, version: def.version + 1 }), added: [], dropped: [], fill: {}, unset: [] };
  }
  if (!def.schema)
    throw badRequest(
      `table ${def.name} has no schema, so it has no columns to change: every field may be written as it is`,
      { field: 'addColumns' },
    );
  const schema: Schema = { ...def.schema };
  const defaults: Record<string, unknown> = { ...(def.defaults ?? {}) };
  let encrypted = [...(def.encrypted ?? [])];
  const fill: Record<string, unknown> = {};

  const drop = b.dropColumns ?? [];
  if (!Array.isArray(drop) || drop.some((c) => typeof c !== 'string'))
    throw badRequest('dropColumns must be an array of column names', { field: 'dropColumns' });
  const dropped = [...new Set(drop as string[])];
  for (const col of dropped) {
    const at = `dropColumns.${col}`;
    if (col === '_id') throw badRequest('"_id" cannot be dropped: it is every row\'s key', { field: at });
    if (!(col in schema))
      throw badRequest(`table ${def.name} has no column ${JSON.stringify(col)} to drop`, { field: at });
    const index = Object.entries(def.indexes?.indexes ?? {}).find(([, ix]) =>
      ix.fields.some((f) => f === col || f.startsWith(`${col}.`)),
    );
    if (index)
      throw conflict(
        `column ${JSON.stringify(col)} is used by index ${index[0]}; drop the index first (DELETE /tables/${def.name}/indexes/${index[0]})`,
        { field: at, index: index[0] },
      );
    delete schema[col];
    delete defaults[col];
    encrypted = encrypted.filter((c) => c !== col);
  }

  const add = b.addColumns ?? {};
  if (typeof add !== 'object' || add === null || Array.isArray(add))
    throw badRequest('addColumns must be an object {"column": "type"} or {"column": {"type": "…", "default": …}}', {
      field: 'addColumns',
    });
  const added: string[] = [];
  for (const [col, spec] of Object.entries(add as Record<string, unknown>)) {
    const at = `addColumns.${col}`;
    let type: unknown = spec;
    let value: unknown;
    if (spec && typeof spec === 'object' && !Array.isArray(spec)) {
      const { type: t, default: d, ...rest } = spec as Record<string, unknown>;
      if (Object.keys(rest).length > 0)
        throw badRequest(
          `${at}: write it as "type" or {"type": "…", "default": …}${'encrypted' in rest ? '; an encrypted column can only be declared when the table is created' : ''}`,
          { field: at },
        );
      type = t;
      value = d ?? undefined;
    }
    if (typeof type === 'string' && type.includes(':encrypted'))
      throw badRequest(`${at}: an encrypted column can only be declared when the table is created`, { field: at });
    let parsed: Schema;
    try {
      parsed = parseTableSchema({ [col]: type }).schema!;
    } catch (e) {
      throw badRequest((e as Error).message, { field: at });
    }
    if (col in schema || dropped.includes(col))
      throw conflict(
        dropped.includes(col)
          ? `column ${JSON.stringify(col)} is both dropped and added; send two changes`
          : `table ${def.name} already has a column ${JSON.stringify(col)} (${schema[col]})`,
        { field: at },
      );
    if (value !== undefined) {
      try {
        checkRow({ [col]: value }, parsed, 0);
      } catch (e) {
        throw badRequest(`${at}.default: ${(e as Error).message.replace(/^row 0: /, '')}`, { field: `${at}.default` });
      }
      defaults[col] = value;
      fill[col] = value;
    }
    schema[col] = parsed[col];
    added.push(col);
  }
  if (added.length === 0 && dropped.length === 0)
    throw badRequest('nothing to change: give addColumns, dropColumns or both', { field: 'addColumns' });

  const table: TableDef = withChanges({ ...def, schema, version: def.version + 1 });
  if (Object.keys(defaults).length > 0) table.defaults = defaults;
  else delete table.defaults;
  if (encrypted.length > 0) table.encrypted = encrypted;
  else {
    delete table.encrypted;
    delete table.keyCheck;
  }
  return { table, added, dropped, fill, unset: dropped };
}

/**
 * Whether two definitions take the same rows: same columns, types, encrypted columns,
 * defaults, and changes on or off. A POST checked against one may commit under the other only if so.
 */
export function sameRowRules(a: TableDef, b: TableDef): boolean {
  // `changes` too: a POST staged its change events only if the table had them on.
  const rules = (d: TableDef) =>
    JSON.stringify([d.schema ?? null, d.encrypted ?? [], d.defaults ?? {}, d.changes !== undefined]);
  return rules(a) === rules(b);
}
