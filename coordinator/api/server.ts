import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { FilterError } from '../../common/filter';
import type { Logger } from '../../common/logger';
import { QueryError } from '../../common/query';
import { ApiError } from '../errors';
import type { Coordinator } from '../coordinator';
import { registerQueryRoutes } from './query-routes';
import { registerRecordRoutes } from './record-routes';
import { registerSystemRoutes } from './system-routes';
import { registerTableRoutes } from './table-routes';

/** Builds the HTTP API. Every error leaves as JSON `{error, message, …details}`. */
export function buildServer(coord: Coordinator, log: Logger): FastifyInstance {
  // Typed as the default instance so route modules need not know the logger's type.
  const app = Fastify({ loggerInstance: log.child({ component: 'http' }) as FastifyBaseLogger, disableRequestLogging: true, bodyLimit: 16 * 1024 * 1024 }) as unknown as FastifyInstance;
  app.setErrorHandler((err, req, reply) => {
    if (err instanceof ApiError) return reply.status(err.status).send({ error: err.code, message: err.message, ...err.details });
    if (err instanceof FilterError) return reply.status(400).send({ error: 'bad_filter', message: err.message, field: err.path });
    if (err instanceof QueryError) return reply.status(400).send({ error: 'bad_query', message: err.message, field: err.at });
    const e = err as { statusCode?: number; code?: string; message: string };
    if (e.statusCode && e.statusCode < 500) {
      return reply.status(e.statusCode).send({ error: e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'too_large' : 'bad_request', message: e.message });
    }
    req.log.error({ err }, 'request failed');
    return reply.status(500).send({ error: 'internal', message: `internal error: ${e.message}` });
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url}; see the README for the API` }));
  registerSystemRoutes(app, coord);
  registerTableRoutes(app, coord);
  registerRecordRoutes(app, coord);
  registerQueryRoutes(app, coord);
  return app;
}
