import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from './deps';
import { withStats } from './table-stats';

type Named = { Params: { name: string } };
type Stats = { Querystring: { stats?: string } };

/** `?stats=1` (or `true`): add each table's rows, chunks and size (table-stats.ts). */
const wantsStats = (q: { stats?: string } | undefined) => q?.stats === '1' || q?.stats === 'true';

type Indexed = { Params: { name: string; index: string } };

/**
 * `PUT /tables/:name`, `GET /tables`, `GET /tables/:name`, `PATCH /tables/:name` (columns),
 * `DELETE /tables/:name`, and the
 * table's secondary indexes: `PUT|DELETE /tables/:name/indexes/:index`, `GET /tables/:name/indexes`.
 */
export function registerTableRoutes(
  app: FastifyInstance,
  coord: Pick<ApiDeps, 'catalogue' | 'cmd' | 'keys' | 'log' | 'mutations' | 'queries' | 'workers'>,
): void {
  app.put<Named & { Body: { schema?: unknown; changes?: unknown } | undefined }>(
    '/tables/:name',
    async (req, reply) => {
      const { table, created } = await coord.catalogue.create(req.params.name, req.body?.schema, req.body?.changes);
      return reply.status(created ? 201 : 200).send({ table, created });
    },
  );
  app.get<Stats>('/tables', async (req) => {
    const tables = await coord.catalogue.list();
    return { tables: wantsStats(req.query) ? await withStats(coord, tables) : tables };
  });
  app.get<Named & Stats>('/tables/:name', async (req) => {
    const table = await coord.catalogue.require(req.params.name);
    return wantsStats(req.query) ? (await withStats(coord, [table]))[0] : table;
  });
  app.patch<Named & { Body: unknown }>('/tables/:name', async (req) => {
    const plan = await coord.catalogue.alter(req.params.name, req.body);
    const rows =
      plan.unset.length > 0 || Object.keys(plan.fill).length > 0
        ? await coord.mutations.alterRows(plan.table, plan)
        : undefined;
    return {
      table: plan.table,
      added: plan.added,
      dropped: plan.dropped,
      ...(rows ? { rowsChanged: rows.count } : {}),
      ...(rows?.pendingWorkers.length ? { pendingWorkers: rows.pendingWorkers } : {}),
    };
  });
  app.delete<Named>('/tables/:name', async (req) => {
    await coord.catalogue.drop(req.params.name);
    return { dropped: req.params.name };
  });
  app.put<Indexed & { Body: unknown }>('/tables/:name/indexes/:index', async (req, reply) => {
    const { index, created } = await coord.catalogue.putIndex(req.params.name, req.params.index, req.body);
    return reply
      .status(created ? 201 : 200)
      .send({ table: req.params.name, index: req.params.index, ...index, created });
  });
  app.get<Named>('/tables/:name/indexes', async (req) => {
    const workers = (await coord.workers.list()).map((w) => ({ id: w.id, indexes: w.status?.indexes }));
    return coord.catalogue.listIndexes(req.params.name, workers);
  });
  app.delete<Indexed>('/tables/:name/indexes/:index', async (req) => {
    await coord.catalogue.dropIndex(req.params.name, req.params.index);
    return { table: req.params.name, dropped: req.params.index };
  });
}
