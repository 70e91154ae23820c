import type { FastifyInstance } from 'fastify';
import type { Coordinator } from '../coordinator';

type Named = { Params: { name: string } };

/** `PUT /tables/:name`, `GET /tables`, `DELETE /tables/:name`. */
export function registerTableRoutes(app: FastifyInstance, coord: Coordinator): void {
  app.put<Named & { Body: { schema?: unknown } | undefined }>('/tables/:name', async (req, reply) => {
    const { table, created } = await coord.catalogue.create(req.params.name, req.body?.schema);
    return reply.status(created ? 201 : 200).send({ table, created });
  });
  app.get('/tables', async () => ({ tables: await coord.catalogue.list() }));
  app.delete<Named>('/tables/:name', async (req) => {
    await coord.catalogue.drop(req.params.name);
    return { dropped: req.params.name };
  });
}
