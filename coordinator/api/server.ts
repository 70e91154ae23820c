import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { FilterError } from '../../common/filter';
import type { Logger } from '../../common/logger';
import { QueryError } from '../../common/query';
import { ApiError, fromRedisError } from '../errors';
import { installAuth } from './auth';
import { registerOpenApi, validationError } from './openapi';
import type { ApiDeps } from './deps';
import { registerAdminRoutes } from './admin-routes';
import { registerQueryRoutes } from './query-routes';
import { registerChangeRoutes } from './change-routes';
import { registerRecordRoutes } from './record-routes';
import { registerSystemRoutes } from './system-routes';
import { registerTableRoutes } from './table-routes';
import { registerWorkerRoutes } from './worker-routes';

/** Builds the HTTP API. Every error leaves as JSON `{error, message, …details}`. */
export async function buildServer(coord: ApiDeps, log: Logger): Promise<FastifyInstance> {
  let requests = 0;
  // Typed as the default instance so route modules need not know the logger's type.
  const app = Fastify({
    loggerInstance: log.child({ component: 'http' }) as FastifyBaseLogger,
    // Requests are logged once, when done, by the onResponse hook below (route pattern, no query string).
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'reqId' }),
    bodyLimit: coord.opts.jsonBodyLimitBytes,
    // GET /tables/:name/records/:id: an _id has up to 256 characters, each up to 12 once URL-encoded (Fastify's default
    // is 100).
    maxParamLength: 4096,
    // A caller's X-Request-Id is kept (and echoed), so one id follows a request through proxies and logs.
    requestIdHeader: 'x-request-id',
    genReqId: () => `${coord.id}-${(++requests).toString(36)}`,
    // Requests are checked against the routes' schemas as they are: no type coercion, no
    // defaults filled in, no unknown keys silently removed (route-schemas.ts).
    ajv: { customOptions: { coerceTypes: false, useDefaults: false, removeAdditional: false, verbose: true } },
  }) as unknown as FastifyInstance;
  installAuth(app, coord.opts.tokens);
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    coord.metrics.httpDuration.observe(
      { method: req.method, route, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    // The route pattern, never the URL: a query string may carry filter values (row data).
    if (route !== '/metrics' && route !== '/healthz') {
      req.log.info(
        {
          method: req.method,
          route,
          table: (req.params as { name?: string } | undefined)?.name,
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime),
        },
        'request done',
      );
    }
  });
  app.setErrorHandler((err, req, reply) => {
    const invalid = err as { validation?: Parameters<typeof validationError>[0]; validationContext?: string };
    if (invalid.validation) err = validationError(invalid.validation, invalid.validationContext ?? 'body');
    if (err instanceof ApiError)
      return reply.status(err.status).send({ error: err.code, message: err.message, ...err.details });
    if (err instanceof FilterError)
      return reply.status(400).send({ error: 'bad_filter', message: err.message, field: err.path });
    if (err instanceof QueryError)
      return reply.status(400).send({ error: 'bad_query', message: err.message, field: err.at });
    const redis = fromRedisError(err);
    if (redis) {
      if (redis.details.retryAfterSeconds) reply.header('retry-after', String(redis.details.retryAfterSeconds));
      return reply.status(redis.status).send({ error: redis.code, message: redis.message, ...redis.details });
    }
    const e = err as { statusCode?: number; code?: string; message: string };
    if (e.statusCode && e.statusCode < 500) {
      if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        const limit = coord.opts.jsonBodyLimitBytes;
        return reply.status(413).send({
          error: 'too_large',
          limit: 'DSTORE_JSON_BODY_LIMIT_BYTES',
          message: `request body is over DSTORE_JSON_BODY_LIMIT_BYTES (${limit} bytes)`,
        });
      }
      return reply.status(e.statusCode).send({
        error: e.statusCode === 415 ? 'unsupported_media_type' : 'bad_request',
        message: e.statusCode === 415 ? `${e.message}: send application/json` : e.message,
      });
    }
    req.log.error({ err }, 'request failed');
    return reply.status(500).send({ error: 'internal', message: `internal error: ${e.message}` });
  });
  app.setNotFoundHandler((req, reply) =>
    reply
      .status(404)
      .send({ error: 'not_found', message: `no route ${req.method} ${req.url}; see the README for the API` }),
  );
  await registerOpenApi(app);
  registerSystemRoutes(app, coord);
  registerWorkerRoutes(app, coord);
  registerTableRoutes(app, coord);
  registerRecordRoutes(app, coord);
  registerQueryRoutes(app, coord);
  registerChangeRoutes(app, coord);
  registerAdminRoutes(app, coord);
  return app;
}
