import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, RouteOptions } from 'fastify';
import { VERSION } from '../../common/version';
import { ApiError } from '../errors';
import { QUEUE_DASHBOARD_PATH } from './admin-routes';
import { ROUTE_SCHEMAS, type Schema } from './route-schemas';

/** Where the API describes itself. */
export const OPENAPI_PATH = '/openapi.json';
/** The interactive page (Swagger UI) over that document. */
export const DOCS_PATH = '/docs';

/** Routes that are not part of the API the document describes (pages, their assets). */
const UNDESCRIBED = [QUEUE_DASHBOARD_PATH, DOCS_PATH, OPENAPI_PATH];

/**
 * Gives every route its schema from {@link ROUTE_SCHEMAS} (so Fastify validates requests
 * with it) and registers @fastify/swagger, which writes the same schemas into
 * `GET /openapi.json`, and @fastify/swagger-ui at `/docs`. Call before any route: a route
 * added without a schema stops the start, so the document never silently lacks one.
 */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = ([] as string[]).concat(route.method);
    if (methods.every((m) => m === 'HEAD') || UNDESCRIBED.some((p) => route.url.startsWith(p))) return;
    const key = `${methods.filter((m) => m !== 'HEAD').join(',')} ${route.url}`;
    const schema = ROUTE_SCHEMAS[key];
    if (!schema) throw new Error(`route ${key} has no schema in coordinator/api/route-schemas.ts`);
    route.schema = { ...schema, ...(route.schema ?? {}) };
  });
  // Answers are described by the schemas, not filtered by them: they leave as built.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'dstore',
        version: VERSION,
        description:
          'A distributed record store on Redis. Every error is JSON {error, message[, field, row]}. With DSTORE_TOKENS set, send `Authorization: Bearer <secret>` (docs/security.md).',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
      tags: ['system', 'tables', 'indexes', 'records', 'workers', 'admin'].map((name) => ({ name })),
    },
    hideUntagged: true,
  });
  await app.register(swaggerUi, { routePrefix: DOCS_PATH, uiConfig: { docExpansion: 'list' } });
  app.get(OPENAPI_PATH, { schema: { hide: true } }, async () => app.swagger());
}

/** One of Ajv's errors, as Fastify attaches them to a validation error (Ajv `verbose`). */
interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
  data?: unknown;
  parentSchema?: Schema;
}

/**
 * A Fastify validation error as dstore's 400 `{error: "bad_request", message, field}`: the
 * field is the property at fault (dotted), the message says what it must be.
 */
export function validationError(
  errors: readonly AjvError[],
  part: 'body' | 'querystring' | 'params' | 'headers' | string,
): ApiError {
  const e = errors[0];
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  let field = path.join('.');
  let rule = e.message ?? 'is not valid';
  if (e.keyword === 'required') {
    field = [...path, String(e.params.missingProperty)].join('.');
    rule = 'is required';
  } else if (e.keyword === 'additionalProperties') {
    const key = String(e.params.additionalProperty);
    const known = Object.keys((e.parentSchema?.properties as Schema | undefined) ?? {});
    const at = field ? ` in ${field}` : '';
    return new ApiError(
      400,
      'bad_request',
      `unknown key ${JSON.stringify(key)}${at}; ${known.length ? `it takes ${known.join(', ')}` : 'it takes none'} (GET ${OPENAPI_PATH})`,
      { field: [...path, key].join('.') },
    );
  } else if (e.keyword === 'enum') {
    rule = `is ${JSON.stringify(e.data)}; use one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
  } else if (e.keyword === 'pattern' && typeof e.parentSchema?.description === 'string') {
    // Descriptions of names read "<what>: <rule>" (route-schemas.ts), as assertName words it.
    const [what, ...rest] = e.parentSchema.description.split(': ');
    if (rest.length > 0)
      return new ApiError(400, 'bad_request', `invalid ${what} ${JSON.stringify(e.data)}: use ${rest.join(': ')}`, {
        field,
      });
    rule = `${JSON.stringify(e.data)} is not valid: ${e.parentSchema.description}`;
  } else if (e.keyword === 'type' && part === 'querystring' && Array.isArray(e.data)) {
    rule = 'is given more than once; give it once';
  }
  const named = !field
    ? part === 'body'
      ? 'the body'
      : `the ${part}`
    : part === 'querystring'
      ? `?${field}=`
      : part === 'params'
        ? field
        : `"${field}"`;
  const message =
    !field && part === 'body' && e.keyword === 'type' ? `the body ${rule} (a JSON object)` : `${named} ${rule}`;
  return new ApiError(400, 'bad_request', message, field ? { field } : {});
}
