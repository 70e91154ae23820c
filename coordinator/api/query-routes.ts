import type { FastifyInstance, FastifyReply } from 'fastify';
import { Readable } from 'node:stream';
import { normalizeQuery, type QuerySpec } from '../../common/query';
import type { Coordinator } from '../coordinator';
import { ApiError, badRequest } from '../errors';
import { checkQueryFields } from '../schema';

type Named = { Params: { name: string } };
type QueryBody = QuerySpec & { partial?: boolean };

/** `POST /tables/:name/query` (JSON body) and `GET /tables/:name/records?…` (the same, for curl). */
export function registerQueryRoutes(app: FastifyInstance, coord: Coordinator): void {
  app.post<Named & { Body: QueryBody | undefined }>('/tables/:name/query', async (req, reply) => {
    const body = req.body ?? {};
    if (typeof body !== 'object' || Array.isArray(body)) throw badRequest('body must be a JSON object {where?, fields?, sort?, limit?, aggregate?, groupBy?}');
    const { partial, ...q } = body;
    return stream(coord, reply, req.params.name, q, partial === true);
  });
  app.get<Named & { Querystring: Record<string, string | undefined> }>('/tables/:name/records', async (req, reply) => {
    return stream(coord, reply, req.params.name, fromQueryString(req.query), ['1', 'true'].includes(req.query.partial ?? ''));
  });
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
async function stream(coord: Coordinator, reply: FastifyReply, name: string, raw: QuerySpec, partial: boolean): Promise<FastifyReply> {
  const table = await coord.catalogue.require(name);
  const q = normalizeQuery(raw);
  checkQueryFields(q, table.schema);
  const it = coord.fetch.read(table.name, q, { partial })[Symbol.asyncIterator]();
  const first = await it.next();
  async function* lines(): AsyncGenerator<string> {
    if (first.done) return;
    yield first.value + '\n';
    try {
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value + '\n';
    } catch (e) {
      const err = e instanceof ApiError ? { error: e.code, message: e.message } : { error: 'internal', message: (e as Error).message };
      yield JSON.stringify({ _error: err }) + '\n';
    }
  }
  reply.header('content-type', 'application/x-ndjson');
  return reply.send(Readable.from(lines()));
}
