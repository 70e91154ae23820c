/**
 * The JSON schemas of the HTTP API's routes: Fastify validates each request's params, query
 * string and JSON body with them (errors leave as `{error: "bad_request", message, field}`,
 * see validation-errors.ts), and @fastify/swagger writes them into `GET /openapi.json`, so
 * what the document shows is what a request is checked against. Checks a schema cannot say
 * (a filter's operators, a column's type against the table's schema) stay in the handlers,
 * with the same kind of answer. Answers are described here but serialised as they are.
 */
import { ON_CONFLICT } from '../../common/api';
import { COLUMN_TYPES } from '../../common/messages';
import { MAX_FIELD_NAME_LENGTH } from '../../common/names';
import { AGGREGATE_OPS } from '../../common/query';
import { CSV_TYPES } from '../schema';

/** A schema as Fastify and @fastify/swagger read it (JSON Schema, plus `description`s). */
export type Schema = Record<string, unknown>;

const TABLE_RULE = '1-64 characters of letters, digits, "_", "." or "-", not starting with "." or "-"';

const name = (what: string): Schema => ({
  type: 'string',
  pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$',
  description: `${what}: ${TABLE_RULE}`,
});

const tableParams: Schema = { type: 'object', required: ['name'], properties: { name: name('table name') } };
const indexParams: Schema = {
  type: 'object',
  required: ['name', 'index'],
  properties: { name: name('table name'), index: { type: 'string', description: 'index name' } },
};
const backupParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,80}$', description: 'backup id' } },
};
const workerParams: Schema = { type: 'object', required: ['id'], properties: { id: name('worker id') } };

/** Every error answer: `error` is a stable code, `message` says what to change. */
export const errorSchema: Schema = {
  type: 'object',
  required: ['error', 'message'],
  properties: {
    error: { type: 'string', description: 'stable code: bad_request, not_found, conflict, unavailable, …' },
    message: { type: 'string', description: 'what went wrong and what to change' },
    field: { type: 'string', description: 'the field, parameter or column at fault' },
    row: { type: 'integer', description: "the request's 1-based row at fault (POST of records)" },
  },
  additionalProperties: true,
};

const errors = { '4XX': errorSchema, '5XX': errorSchema };
const anyObject: Schema = { type: 'object', additionalProperties: true };
const stringList: Schema = { type: 'array', items: { type: 'string' } };

const changesSetting: Schema = {
  description:
    "the table's change stream (GET /tables/:name/changes): true, false, or {maxEntries, maxAgeMs}, how much of it Redis keeps (default: about 1,000,000 events)",
  anyOf: [
    { type: 'boolean' },
    {
      type: 'object',
      properties: { maxEntries: { type: 'integer' }, maxAgeMs: { type: 'integer' } },
      additionalProperties: false,
    },
  ],
};

const tableInfo: Schema = {
  type: 'object',
  required: ['name', 'version', 'createdAt'],
  properties: {
    name: { type: 'string' },
    schema: { type: 'object', additionalProperties: { type: 'string' }, description: 'column → type' },
    encrypted: stringList,
    defaults: anyObject,
    version: { type: 'integer' },
    indexes: anyObject,
    changes: { type: 'object', properties: { maxEntries: { type: 'integer' }, maxAgeMs: { type: 'integer' } } },
    createdAt: { type: 'integer', description: 'milliseconds since the epoch' },
    stats: anyObject,
  },
};

const statsQuery: Schema = {
  type: 'object',
  properties: { stats: { type: 'string', enum: ['0', '1', 'true', 'false'], description: 'add rows, chunks, bytes' } },
};

const columnType = { type: 'string', description: `a column type: ${COLUMN_TYPES.join(', ')}` };

const filter: Schema = {
  type: 'object',
  description: 'a filter (docs/filter.md): {"field": value | {"$op": value}}, $and/$or/$not; {} matches every row',
};

const NDJSON = 'application/x-ndjson';
const ndjsonAnswer = (description: string): Schema => ({
  description,
  content: { [NDJSON]: { schema: { type: 'string', description: 'one JSON object per line' } } },
});

const pending: Schema = {
  type: 'array',
  items: { type: 'string' },
  description: 'workers that have the change queued but had not applied it yet',
};

/** Route → its schema, by `METHOD path` as the route is registered. */
export const ROUTE_SCHEMAS: Record<string, Schema> = {
  'GET /healthz': {
    tags: ['system'],
    summary: 'Liveness: Redis reachable, live workers',
    response: {
      200: {
        type: 'object',
        properties: { ok: { type: 'boolean' }, coordinator: { type: 'string' }, liveWorkers: { type: 'integer' } },
      },
      ...errors,
    },
  },
  'GET /workers': {
    tags: ['system'],
    summary: 'Known workers, their liveness and last status',
    response: { 200: { type: 'object', properties: { workers: { type: 'array', items: anyObject } } }, ...errors },
  },
  'GET /status': {
    tags: ['system'],
    summary: 'Cluster status: workers, chunks, under-replicated, queues, scrub',
    response: { 200: anyObject, ...errors },
  },
  'GET /metrics': {
    tags: ['system'],
    summary: 'Prometheus metrics',
    produces: ['text/plain'],
    response: {
      200: { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } },
      ...errors,
    },
  },
  'POST /workers/:id/drain': {
    tags: ['workers'],
    summary: 'Move every chunk off a worker, then retire it',
    params: workerParams,
    body: {
      type: ['object', 'null'],
      properties: { force: { type: 'boolean', description: 'drain even if fewer than R workers would be left' } },
      additionalProperties: false,
    },
    response: { 202: anyObject, ...errors },
  },
  'GET /workers/:id/drain': {
    tags: ['workers'],
    summary: "A drain's progress",
    params: workerParams,
    response: { 200: anyObject, ...errors },
  },
  'POST /rebalance': {
    tags: ['workers'],
    summary: 'Even out chunk counts across workers (moves run as jobs)',
    body: {
      type: ['object', 'null'],
      properties: { dryRun: { type: 'boolean', description: 'plan only' } },
      additionalProperties: false,
    },
    response: { 200: anyObject, 202: anyObject, ...errors },
  },
  'GET /rebalance': {
    tags: ['workers'],
    summary: 'Moves of the last rebalance not yet done',
    response: { 200: { type: 'object', properties: { pending: { type: 'integer' } } }, ...errors },
  },
  'PUT /tables/:name': {
    tags: ['tables'],
    summary: 'Create a table (idempotent)',
    params: tableParams,
    body: {
      type: ['object', 'null'],
      properties: {
        schema: {
          description:
            'column → type, as an object {"col": "integer"} or text "col:integer,other:string"; absent: schemaless',
          anyOf: [{ type: 'string' }, { type: 'object', additionalProperties: true }],
        },
        changes: changesSetting,
      },
      additionalProperties: true,
    },
    response: {
      200: { type: 'object', properties: { table: tableInfo, created: { type: 'boolean' } } },
      201: { type: 'object', properties: { table: tableInfo, created: { type: 'boolean' } } },
      ...errors,
    },
  },
  'GET /tables': {
    tags: ['tables'],
    summary: 'List tables',
    querystring: statsQuery,
    response: { 200: { type: 'object', properties: { tables: { type: 'array', items: tableInfo } } }, ...errors },
  },
  'GET /tables/:name': {
    tags: ['tables'],
    summary: "A table's definition (and stats)",
    params: tableParams,
    querystring: statsQuery,
    response: { 200: tableInfo, ...errors },
  },
  'PATCH /tables/:name': {
    tags: ['tables'],
    summary: "Change a typed table's columns, or turn its change stream on or off",
    params: tableParams,
    body: {
      type: 'object',
      properties: {
        addColumns: {
          type: 'object',
          description: 'column → type, or {type, default}: stored rows get the default',
          additionalProperties: {
            anyOf: [columnType, { type: 'object', required: ['type'], properties: { type: columnType, default: {} } }],
          },
        },
        dropColumns: { type: 'array', items: { type: 'string', maxLength: MAX_FIELD_NAME_LENGTH } },
        changes: changesSetting,
      },
      additionalProperties: false,
    },
    response: {
      200: {
        type: 'object',
        properties: {
          table: tableInfo,
          added: stringList,
          dropped: stringList,
          rowsChanged: { type: 'integer' },
          pendingWorkers: pending,
        },
      },
      ...errors,
    },
  },
  'DELETE /tables/:name': {
    tags: ['tables'],
    summary: 'Drop a table and every row of it',
    params: tableParams,
    response: { 200: { type: 'object', properties: { dropped: { type: 'string' } } }, ...errors },
  },
  'PUT /tables/:name/indexes/:index': {
    tags: ['indexes'],
    summary: 'Declare a secondary index (built online on every worker)',
    params: indexParams,
    body: {
      type: 'object',
      required: ['fields'],
      properties: {
        fields: {
          type: 'array',
          minItems: 1,
          items: { type: 'string' },
          description: 'columns, or JSON paths in a schemaless table (the filter language\'s "a.b")',
        },
      },
      additionalProperties: false,
    },
    response: { 200: anyObject, 201: anyObject, ...errors },
  },
  'GET /tables/:name/indexes': {
    tags: ['indexes'],
    summary: "A table's indexes and their state on every worker",
    params: tableParams,
    response: { 200: anyObject, ...errors },
  },
  'DELETE /tables/:name/indexes/:index': {
    tags: ['indexes'],
    summary: 'Drop a secondary index',
    params: indexParams,
    response: {
      200: { type: 'object', properties: { table: { type: 'string' }, dropped: { type: 'string' } } },
      ...errors,
    },
  },
  'POST /tables/:name/records': {
    tags: ['records'],
    summary: 'Insert (or upsert) records, streamed, all or nothing',
    description:
      'The body is streamed and checked record by record (JSON object, schema, `_id`): an error names the row and field. NDJSON, a JSON array in any formatting, or CSV with a header row.',
    params: tableParams,
    querystring: {
      type: 'object',
      properties: {
        csvTypes: { type: 'string', enum: [...CSV_TYPES], description: 'CSV into a schemaless table' },
        onConflict: {
          type: 'string',
          enum: [...ON_CONFLICT],
          description: 'a record whose _id is stored: 409 (error), replace the row, or set its given fields',
        },
        ciphertextOf: {
          ...name('table name'),
          description:
            "restore (`dstore backup restore`): the encrypted columns hold ciphertext of this table, as a backup kept it; each is decrypted with this coordinator's key and encrypted again",
        },
      },
    },
    response: {
      200: {
        type: 'object',
        required: ['post', 'inserted', 'chunks', 'underReplicated'],
        properties: {
          post: { type: 'string' },
          inserted: { type: 'integer' },
          replaced: { type: 'integer' },
          merged: { type: 'integer' },
          chunks: { type: 'integer' },
          underReplicated: { type: 'integer' },
        },
      },
      ...errors,
    },
  },
  'PATCH /tables/:name/records': {
    tags: ['records'],
    summary: 'Update every row matching a filter',
    params: tableParams,
    body: {
      type: 'object',
      required: ['where', 'set'],
      properties: { where: filter, set: { type: 'object', description: 'field (dotted path) → new value' } },
      additionalProperties: false,
    },
    response: {
      200: { type: 'object', properties: { updated: { type: 'integer' }, pendingWorkers: pending } },
      ...errors,
    },
  },
  'DELETE /tables/:name/records': {
    tags: ['records'],
    summary: 'Delete every row matching a filter',
    params: tableParams,
    body: {
      type: 'object',
      required: ['where'],
      properties: { where: filter },
      additionalProperties: false,
    },
    response: {
      200: { type: 'object', properties: { deleted: { type: 'integer' }, pendingWorkers: pending } },
      ...errors,
    },
  },
  'POST /tables/:name/query': {
    tags: ['records'],
    summary: 'Read: filter, project, sort, page, aggregate',
    description:
      'Answers NDJSON rows; a page cut by `limit` ends with {"_next": cursor}; a read that cannot be exact fails (503) or, with `partial`, says what it lacks in a last {"_partial": true, …} line.',
    params: tableParams,
    body: {
      type: ['object', 'null'],
      properties: {
        where: filter,
        fields: { type: 'array', items: { type: 'string' }, description: 'fields to return' },
        sort: {
          type: 'array',
          items: {
            type: 'object',
            required: ['field'],
            properties: { field: { type: 'string' }, dir: { type: 'string', enum: ['asc', 'desc'] } },
          },
        },
        limit: { type: 'integer', minimum: 0 },
        aggregate: {
          type: 'array',
          items: {
            type: 'object',
            required: ['op'],
            properties: {
              op: { type: 'string', enum: [...AGGREGATE_OPS] },
              field: { type: 'string' },
              as: { type: 'string' },
            },
          },
        },
        groupBy: { type: 'array', items: { type: 'string' } },
        cursor: { type: 'string', description: 'the `_next` of the page before (same query)' },
        partial: { type: 'boolean', description: 'leave out chunks without a live replica, and say so' },
        explain: { type: 'boolean', description: "each worker's SQLite plan" },
      },
    },
    response: { 200: ndjsonAnswer('rows, one JSON object per line'), ...errors },
  },
  'GET /tables/:name/records': {
    tags: ['records'],
    summary: 'Read (query string form of POST /tables/{name}/query)',
    params: tableParams,
    querystring: {
      type: 'object',
      properties: {
        where: { type: 'string', description: 'URL-encoded JSON filter' },
        fields: { type: 'string', description: 'a,b,c' },
        sort: { type: 'string', description: 'field[:asc|desc],…' },
        limit: { type: 'string', pattern: '^\\d+$' },
        cursor: { type: 'string' },
        partial: { type: 'string', enum: ['0', '1', 'true', 'false'] },
      },
    },
    response: { 200: ndjsonAnswer('rows, one JSON object per line'), ...errors },
  },
  'GET /tables/:name/records/:id': {
    tags: ['records'],
    summary: 'One record by _id',
    params: {
      type: 'object',
      required: ['name', 'id'],
      properties: { name: name('table name'), id: { type: 'string', minLength: 1, maxLength: 256 } },
    },
    response: { 200: anyObject, ...errors },
  },
  'GET /tables/:name/changes': {
    tags: ['records'],
    summary: "Watch a table's committed changes, one event per row, in its write order",
    description:
      'NDJSON lines {"token","op":"insert"|"update"|"delete","_id","row"} (no row for a delete), or Server-Sent Events with Accept: text/event-stream (each id is the token; Last-Event-ID resumes). Without after it starts at the end; the stream stays open. 409 when the table keeps no changes, 410 when events after the token are no longer kept.',
    params: tableParams,
    querystring: {
      type: 'object',
      properties: {
        after: {
          type: 'string',
          pattern: '^\\d{1,20}-\\d{1,20}\\.\\d{1,20}$',
          description: 'the token of the last event seen: go on after it',
        },
      },
    },
    response: { 200: { type: 'string', description: 'NDJSON or text/event-stream' }, ...errors },
  },
  'GET /admin/dead-letters': {
    tags: ['admin'],
    summary: 'Messages workers could not decode, newest first',
    querystring: {
      type: 'object',
      properties: { limit: { type: 'string', pattern: '^\\d+$' } },
    },
    response: { 200: anyObject, ...errors },
  },
  'POST /admin/backups': {
    tags: ['admin'],
    summary: 'Start a backup: take a consistent cut of every table (docs/operations.md, "Backups")',
    description:
      "Takes every table's write-order lock for a moment and puts a BACKUP entry on every worker's stream; each worker keeps a read snapshot as of it. Answers the cut: each table's definition and chunks. Read each table with GET /admin/backups/:id/tables/:name, then DELETE the backup.",
    response: {
      201: {
        type: 'object',
        required: ['backup', 'cutAt', 'marks', 'tables'],
        properties: {
          backup: { type: 'string' },
          cutAt: { type: 'integer', description: 'Redis time of the cut, ms' },
          marks: { type: 'object', additionalProperties: { type: 'string' }, description: 'worker → its BACKUP entry' },
          tables: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                def: tableInfo,
                chunks: { type: 'object', additionalProperties: stringList, description: 'chunk → holders' },
              },
            },
          },
        },
      },
      ...errors,
    },
  },
  'GET /admin/backups/:id': {
    tags: ['admin'],
    summary: "A backup's progress: rows read of each table",
    params: backupParams,
    response: { 200: anyObject, ...errors },
  },
  'GET /admin/backups/:id/tables/:name': {
    tags: ['admin'],
    summary: "One table's rows as of the backup's cut (NDJSON, as stored, encrypted columns encrypted)",
    description:
      'Ends with a line {"_backup": {"table", "rows"}}; a failure after rows were sent ends with {"_error": …} instead.',
    params: {
      type: 'object',
      required: ['id', 'name'],
      properties: { id: backupParams.properties.id, name: name('table name') },
    },
    response: { 200: { type: 'string', description: 'NDJSON' }, ...errors },
  },
  'DELETE /admin/backups/:id': {
    tags: ['admin'],
    summary: 'End a backup: the workers let its snapshots go',
    params: backupParams,
    response: { 200: { type: 'object', properties: { ended: { type: 'string' } } }, ...errors },
  },
  'GET /admin/encryption': {
    tags: ['admin'],
    summary: "The key check value of this coordinator's DSTORE_ENCRYPTION_KEY (not the key), or null",
    response: { 200: { type: 'object', properties: { keyCheck: { type: ['string', 'null'] } } }, ...errors },
  },
  'DELETE /admin/dead-letters': {
    tags: ['admin'],
    summary: 'Clear dead letters: all, ?before=<id> or ?ids=<id>,…',
    querystring: {
      type: 'object',
      properties: { before: { type: 'string' }, ids: { type: 'string' } },
    },
    response: { 200: { type: 'object', properties: { deleted: { type: 'integer' } } }, ...errors },
  },
};
