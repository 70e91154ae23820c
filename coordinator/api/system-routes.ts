import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from './deps';

/** `GET /healthz`, `GET /workers`, `GET /status`, `GET /metrics`. */
export function registerSystemRoutes(
  app: FastifyInstance,
  coord: Pick<ApiDeps, 'cmd' | 'id' | 'metrics' | 'status' | 'workers'>,
): void {
  app.get('/healthz', async (_req, reply) => {
    try {
      await coord.cmd.ping();
      const live = await coord.workers.live();
      return { ok: true, coordinator: coord.id, liveWorkers: live.length };
    } catch (e) {
      return reply
        .status(503)
        .send({ error: 'unavailable', message: `redis unreachable: ${(e as Error).message}`, ok: false });
    }
  });
  app.get('/workers', async () => ({ workers: await coord.workers.list() }));
  app.get('/status', async () => coord.status());
  // One scrape at a time: each resets and refills the Redis-derived gauges.
  let scraping: Promise<unknown> = Promise.resolve();
  app.get('/metrics', async (_req, reply) => {
    const run = scraping.then(async () => {
      coord.metrics.update(await coord.status());
      return coord.metrics.text();
    });
    scraping = run.catch(() => undefined);
    const { contentType, body } = await run;
    return reply.header('content-type', contentType).send(body);
  });
}
