import type { FastifyInstance, FastifyReply } from 'fastify';
import { Readable } from 'node:stream';
import type { QuerySpec } from '../../common/query';
import { badRequest, errorLine } from '../errors';
import type { QueryCursor, QueryEvent, QueryService } from '../query-service';

export { checkLimit } from '../query-service';

type Named = { Params: { name: string } };
type QueryBody = QuerySpec & { partial?: boolean; explain?: boolean; cursor?: unknown };

/** What the query routes need of their coordinator. */
export interface QueryRoutesDeps {
  queries: QueryService;
}

/**
 * `POST /tables/:name/query` (JSON body), `GET /tables/:name/records?…` (the same, for
 * curl) and `GET /tables/:name/records/:id` (one record by `_id`).
 */
export function registerQueryRoutes(app: FastifyInstance, api: QueryRoutesDeps): void {
  app.post<Named & { Body: QueryBody | undefined }>('/tables/:name/query', async (req, reply) => {
    // The body's shape is checked by the route's schema (route-schemas.ts).
    const { partial, explain, cursor, ...q } = req.body ?? {};
    return stream(
      reply,
      await api.queries.open(req.params.name, q, { partial: partial === true, explain: explain === true, cursor }),
    );
  });
  app.get<Named & { Querystring: Record<string, string | undefined> }>('/tables/:name/records', async (req, reply) => {
    const partial = ['1', 'true'].includes(req.query.partial ?? '');
    const cursor = req.query.cursor;
    return stream(reply, await api.queries.open(req.params.name, fromQueryString(req.query), { partial, cursor }));
  });
  app.get<{ Params: { name: string; id: string } }>('/tables/:name/records/:id', async (req) =>
    api.queries.recordById(req.params.name, req.params.id),
  );
}

/** `?where={json}&fields=a,b&sort=f:desc,g&limit=N` → a query (`cursor` and `partial` are options of the read). */
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
      if (dir !== 'asc' && dir !== 'desc')
        throw badRequest(`sort ${JSON.stringify(s)}: direction must be asc or desc`, { field: 'sort' });
      return { field: i > 0 ? s.slice(0, i) : s, dir };
    });
  }
  if (qs.limit !== undefined) {
    if (!/^\d+$/.test(qs.limit))
      throw badRequest(`limit must be a whole number, got ${JSON.stringify(qs.limit)}`, { field: 'limit' });
    q.limit = Number(qs.limit);
  }
  return q;
}

/** One event as NDJSON text, newline included. */
function ndjson(e: QueryEvent): string {
  switch (e.kind) {
    case 'rows':
      return e.text + '\n';
    case 'next':
      return JSON.stringify({ _next: e.cursor }) + '\n';
    case 'partial':
      return (
        JSON.stringify({ _partial: true, missingWorkers: e.missingWorkers, missingChunks: e.missingChunks }) + '\n'
      );
    case 'explain':
      return JSON.stringify({ explain: e.plan }) + '\n';
  }
}

/** Rows held before the status is sent: a small answer over a limit still gets its 4xx. */
const HEAD_ROWS = 1000;

/**
 * Streams a read as NDJSON. Its first rows are awaited before the status is sent, so
 * failures known early (no live replica, too many rows) get a proper status; a failure after
 * rows have left ends the stream with a `{"_error": …}` line.
 */
async function stream(reply: FastifyReply, cursor: QueryCursor): Promise<FastifyReply> {
  // Counted in rows, not events: an event of a plain read is a whole batch.
  const head: string[] = [];
  let done = false;
  try {
    while (cursor.rowCount <= HEAD_ROWS) {
      const e = await cursor.next();
      if (!e) {
        done = true;
        break;
      }
      head.push(ndjson(e));
    }
  } catch (e) {
    await cursor.close();
    throw e;
  }
  reply.header('content-type', 'application/x-ndjson');
  // The whole answer is here: one body, one write (a stream wrote each piece as a chunk).
  if (done) return reply.send(head.join(''));
  async function* lines(): AsyncGenerator<string> {
    try {
      yield head.join('');
      try {
        for (let e = await cursor.next(); e; e = await cursor.next()) yield ndjson(e);
      } catch (e) {
        yield errorLine(e);
      }
    } finally {
      // The client went away mid-answer: close the read, so its workers stop sending.
      await cursor.close();
    }
  }
  return reply.send(Readable.from(lines()));
}
