import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { findToken, roleAllows, type ApiToken, type Role } from '../../common/tokens';

/**
 * Authentication of the HTTP API: one `onRequest` hook, added before any route, checks
 * `Authorization: Bearer <secret>` (or HTTP Basic with the secret as password, so a
 * browser can open the bull-board dashboard) against the configured tokens and the role
 * the route needs from {@link ACCESS_RULES}. 401 without a valid token, 403 when its
 * role is too low. Without tokens the hook is not installed (see docs/security.md).
 */

/** Who may call a route: a role, or `open` for everyone (health checks). */
export type Access = Role | 'open';

/** One line of the route → role table. */
export interface AccessRule {
  /** HTTP method, or `*` for any (HEAD counts as GET). */
  method: string;
  /** Path prefix by whole segments; `*` stands for any one segment. */
  path: string;
  access: Access;
}

/**
 * The route → role table, first match wins, so specific lines come first. A route that
 * matches no line needs `admin`: a route added without a line here is closed, not open.
 * A request that matches no route (a 404) needs any valid token.
 */
export const ACCESS_RULES: readonly AccessRule[] = [
  { method: 'GET', path: '/healthz', access: 'open' },
  // The API's description and its page: what the routes take, no data.
  { method: 'GET', path: '/openapi.json', access: 'open' },
  { method: 'GET', path: '/docs', access: 'open' },
  { method: 'GET', path: '/metrics', access: 'read' },
  { method: 'GET', path: '/status', access: 'read' },
  { method: '*', path: '/admin', access: 'admin' },
  { method: '*', path: '/rebalance', access: 'admin' },
  { method: 'GET', path: '/workers', access: 'read' },
  { method: '*', path: '/workers', access: 'admin' },
  { method: 'GET', path: '/tables', access: 'read' },
  { method: 'POST', path: '/tables/*/query', access: 'read' },
  { method: 'POST', path: '/tables/*/records', access: 'write' },
  { method: 'PATCH', path: '/tables/*/records', access: 'write' },
  { method: 'DELETE', path: '/tables/*/records', access: 'write' },
  { method: 'PUT', path: '/tables/*', access: 'admin' },
  { method: 'DELETE', path: '/tables/*', access: 'admin' },
  { method: 'PATCH', path: '/tables/*', access: 'admin' },
];

function segments(path: string): string[] {
  return path.split('?')[0].split('/').filter(Boolean);
}

/**
 * The access a request needs. `route` is the matched route pattern
 * (`/tables/:name/records`), undefined when no route matched; `url` the raw URL.
 */
export function requiredAccess(method: string, route: string | undefined, url: string): Access {
  const m = method === 'HEAD' ? 'GET' : method;
  // A restore's POST decrypts the ciphertext it is given: for admins only, or it would
  // decrypt, for anyone who may write, values taken from a backup or from Redis.
  if (m === 'POST' && /[?&]ciphertextOf=/.test(url)) return 'admin';
  const segs = segments(route ?? url);
  for (const r of ACCESS_RULES) {
    if (r.method !== '*' && r.method !== m) continue;
    const want = segments(r.path);
    if (want.length > segs.length) continue;
    if (want.every((w, i) => w === '*' || w === segs[i])) return r.access;
  }
  return route === undefined ? 'read' : 'admin';
}

/** The secret of an Authorization header (Bearer, or Basic with the secret as password). */
export function secretOf(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^(Bearer|Basic)\s+(\S+)\s*$/i.exec(header);
  if (!m) return undefined;
  if (m[1].toLowerCase() === 'bearer') return m[2];
  const decoded = Buffer.from(m[2], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  return i >= 0 ? decoded.slice(i + 1) : undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The name of the token that authenticated this request, if tokens are on. */
    tokenName?: string;
  }
}

/** Installs the hook on `app` (call before registering routes). */
export function installAuth(app: FastifyInstance, tokens: readonly ApiToken[]): void {
  if (tokens.length === 0) return;
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const route = req.routeOptions.url;
    const need = requiredAccess(req.method, route, req.url);
    if (need === 'open') return;
    const where = `${req.method} ${route ?? req.url.split('?')[0]}`;
    const header = req.headers.authorization;
    const secret = secretOf(header);
    const token = secret === undefined ? undefined : findToken(tokens, secret);
    if (!token) {
      const challenge = route?.startsWith('/admin') ? 'Basic realm="dstore", charset="UTF-8"' : 'Bearer realm="dstore"';
      return reply
        .status(401)
        .header('www-authenticate', challenge)
        .send({
          error: 'unauthorized',
          message: header
            ? `${where}: the Authorization token is not valid; send "Authorization: Bearer <secret>" of a token in DSTORE_TOKENS (the CLI reads DSTORE_TOKEN)`
            : `${where} needs a token: send "Authorization: Bearer <secret>" (the CLI reads DSTORE_TOKEN)`,
        });
    }
    req.tokenName = token.name;
    if (!roleAllows(token.role, need)) {
      return reply.status(403).send({
        error: 'forbidden',
        message: `${where} needs the ${need} role; token ${token.name} has ${token.role}`,
        needs: need,
        role: token.role,
      });
    }
  });
}
