import type { FastifyInstance } from 'fastify';
import type { Coordinator } from '../coordinator';

/** `GET /healthz`, `GET /workers`. */
export function registerSystemRoutes(app: FastifyInstance, coord: Coordinator): void {
  app.get('/healthz', async (_req, reply) => {
    try {
      await coord.cmd.ping();
      const live = await coord.workers.live();
      return { ok: true, coordinator: coord.id, liveWorkers: live.length };
    } catch (e) {
      return reply.status(503).send({ error: 'unavailable', message: `redis unreachable: ${(e as Error).message}`, ok: false });
    }
  });
  app.get('/workers', async () => ({ workers: await coord.workers.list() }));
}
