import type { FastifyInstance, FastifyReply } from 'fastify';
import { Readable } from 'node:stream';
import { normalizeQuery, type QuerySpec } from '../../common/query';
import type { Coordinator } from '../coordinator';
import { ApiError, badRequest } from '../errors';
import { limitExceeded } from '../limits';
import { checkQueryFields } from '../schema';
import { readWhole } from './read-whole';

type Named = { Params: { name: string } };
type QueryBody = QuerySpec & { partial?: boolean; explain?: boolean };

/**
 * The one cap on `limit`: at most `DSTORE_MAX_RESULT_ROWS`. A larger one is a 400 whose
 * body names the setting (`limit`), the query key (`field: "limit"`), the value and the cap.
 */
export function checkLimit(limit: number | undefined, maxResultRows: number): void {
  if (limit === undefined || limit <= maxResultRows) return;
  throw limitExceeded(400, 'DSTORE_MAX_RESULT_ROWS', `limit ${limit} is over DSTORE_MAX_RESULT_ROWS (${maxResultRows}), the most rows one answer may hold; page with a smaller limit and a filter on the sort key`, {
    field: 'limit',
    value: limit,
    max: maxResultRows,
  });
}

/**
 * `POST /tables/:name/query` (JSON body), `GET /tables/:name/records?…` (the same, for
 * curl) and `GET /tables/:name/records/:id` (one record by `_id`).
 */
export function registerQueryRoutes(app: FastifyInstance, coord: Coordinator): void {
  app.post<Named & { Body: QueryBody | undefined }>('/tables/:name/query', async (req, reply) => {
    const body = req.body ?? {};
    if (typeof body !== 'object' || Array.isArray(body)) throw badRequest('body must be a JSON object {where?, fields?, sort?, limit?, aggregate?, groupBy?}');
    const { partial, explain, ...q } = body;
    return stream(coord, reply, req.params.name, q, partial === true, explain === true);
  });
  app.get<Named & { Querystring: Record<string, string | undefined> }>('/tables/:name/records', async (req, reply) => {
    return stream(coord, reply, req.params.name, fromQueryString(req.query), ['1', 'true'].includes(req.query.partial ?? ''));
  });
  app.get<{ Params: { name: string; id: string } }>('/tables/:name/records/:id', async (req) => recordById(coord, req.params.name, req.params.id));
}

/**
 * One record by `_id`: a read with where `{_id: id}` like any other (through
 * `coord.fetch.read`, decrypted, bounded by `DSTORE_QUERY_TIMEOUT_MS`). A 404 naming table
 * and id when the table has no such record; a 503 (as for any read) when some chunk has no
 * live replica, since the record could be in it.
 */
async function recordById(coord: Coordinator, name: string, id: string): Promise<Record<string, unknown>> {
  const started = coord.fetch.start(name);
  const table = await coord.catalogue.require(name);
  const q = normalizeQuery({ where: { _id: id }, limit: 1 });
  const cipher = coord.encryption.cipherFor(table, 'read');
  const decryptRow = cipher ? (r: Record<string, unknown>) => coord.encryption.decryptRow(table, cipher, r) : undefined;
  const timer = coord.metrics.fetchDuration.startTimer();
  let lines: string[];
  try {
    lines = await readWhole(coord.fetch.read(table.name, q, { decryptRow }, started), coord.opts.queryTimeoutMs, `the lookup of _id ${JSON.stringify(id)}`);
    timer({ outcome: 'ok' });
  } catch (e) {
    timer({ outcome: 'error' });
    throw e;
  }
  if (lines.length === 0) throw new ApiError(404, 'not_found', `table ${table.name} has no record with _id ${JSON.stringify(id)}`, { table: table.name, id });
  return JSON.parse(lines[0]) as Record<string, unknown>;
}

/** `?where={json}&fields=a,b&sort=f:desc,g&limit=N` → a query. */
export function fromQueryString(qs: Record<string, string | undefined>): QuerySpec {
  const q: QuerySpec = {};
  if (qs.where) {
    try {
      q.where = JSON.parse(qs.where);
    } catch {
      throw badRequest('where must be URL-encoded JSON, e.g. where=%7B%22a%22%3A1%7D', { field: 'where' });
    }
  }
  if (qs.fields) q.fields = qs.fields.split(',').map((f) => f.trim());
  if (qs.sort) {
    q.sort = qs.sort.split(',').map((s) => {
      const i = s.lastIndexOf(':');
      const dir = i > 0 ? s.slice(i + 1) : 'asc';
      if (dir !== 'asc' && dir !== 'desc') throw badRequest(`sort ${JSON.stringify(s)}: direction must be asc or desc`, { field: 'sort' });
      return { field: i > 0 ? s.slice(0, i) : s, dir };
    });
  }
  if (qs.limit !== undefined) {
    if (!/^\d+$/.test(qs.limit)) throw badRequest(`limit must be a whole number, got ${JSON.stringify(qs.limit)}`, { field: 'limit' });
    q.limit = Number(qs.limit);
  }
  return q;
}

/**
 * Streams NDJSON. The first line is awaited before the status is sent, so failures
 * known early (bad query, unknown table, no live replica) get a proper status; a failure
 * after rows have left ends the stream with a `{"_error": …}` line.
 */
async function stream(coord: Coordinator, reply: FastifyReply, name: string, raw: QuerySpec, partial: boolean, explain = false): Promise<FastifyReply> {
  // Issued together with the catalogue lookup: one round trip to Redis, not two.
  const started = coord.fetch.start(name);
  const table = await coord.catalogue.require(name);
  const q = normalizeQuery(raw);
  const { maxResultRows, queryTimeoutMs } = coord.opts;
  checkLimit(q.limit, maxResultRows);
  checkQueryFields(q, table.schema);
  coord.encryption.checkQuery(table, q);
  const cipher = coord.encryption.cipherFor(table, 'read');
  const decryptRow = cipher ? (r: Record<string, unknown>) => coord.encryption.decryptRow(table, cipher, r) : undefined;
  const timer = coord.metrics.fetchDuration.startTimer();
  const it = coord.fetch.read(table.name, q, { partial, decryptRow, explain }, started)[Symbol.asyncIterator]();
  const deadline = Date.now() + queryTimeoutMs;
  const timedOut = () => limitExceeded(504, 'DSTORE_QUERY_TIMEOUT_MS', `the query ran longer than DSTORE_QUERY_TIMEOUT_MS (${queryTimeoutMs} ms); narrow the filter or add a limit`);
  /** The next line, or a 504 once the deadline passes (the read is then closed). */
  const next = async (): Promise<IteratorResult<string>> => {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => (timer = setTimeout(() => resolve('expired'), Math.max(0, deadline - Date.now()))));
    try {
      const r = await Promise.race([it.next(), expired]);
      if (r !== 'expired') return r;
    } finally {
      clearTimeout(timer);
    }
    void it.return?.(undefined)?.catch(() => undefined);
    throw timedOut();
  };
  let rows = 0;
  const tooMany = () =>
    limitExceeded(400, 'DSTORE_MAX_RESULT_ROWS', `the answer has more than DSTORE_MAX_RESULT_ROWS (${maxResultRows}) rows; add a limit or narrow the filter`);
  const isRow = (line: string) => !line.startsWith('{"_partial"');
  // A plain read yields whole FETCH_RESP batches: one piece of text may hold many lines.
  const rowsIn = (text: string) => (isRow(text) ? countLines(text) : 0);
  // Lines read before the status is sent: a small over-limit answer still gets a 400.
  // Counted in rows, not pieces: a piece of a plain read is a whole batch, and a thousand
  // of those would be most of a big answer held here before the first byte goes out.
  const head: string[] = [];
  let done = false;
  try {
    while (rows <= Math.min(maxResultRows, 1000)) {
      const r = await next();
      if (r.done) {
        done = true;
        break;
      }
      head.push(r.value);
      if ((rows += rowsIn(r.value)) > maxResultRows) {
        void it.return?.(undefined)?.catch(() => undefined);
        throw tooMany();
      }
    }
  } catch (e) {
    timer({ outcome: 'error' });
    throw e;
  }
  async function* lines(): AsyncGenerator<string> {
    try {
      for (const l of head) yield l + '\n';
      if (done) return void timer({ outcome: 'ok' });
      try {
        for (let r = await next(); !r.done; r = await next()) {
          if ((rows += rowsIn(r.value)) > maxResultRows) {
            void it.return?.(undefined)?.catch(() => undefined);
            throw tooMany();
          }
          yield r.value + '\n';
        }
        done = true;
        timer({ outcome: 'ok' });
      } catch (e) {
        timer({ outcome: 'error' });
        const err = e instanceof ApiError ? { error: e.code, message: e.message, ...e.details } : { error: 'internal', message: (e as Error).message };
        yield JSON.stringify({ _error: err }) + '\n';
      }
    } finally {
      // The client went away mid-answer: close the read, so its workers stop sending.
      if (!done) void it.return?.(undefined)?.catch(() => undefined);
    }
  }
  reply.header('content-type', 'application/x-ndjson');
  return reply.send(Readable.from(lines()));
}

/** Lines in a piece of output text that does not end in a newline. */
function countLines(text: string): number {
  let n = 1;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}
