import type { FastifyInstance } from 'fastify';
import { Readable } from 'node:stream';
import type { ChangeEvent } from '../../common/changes';
import { toChangeEvent, type ChangeFeed } from '../changes';
import type { Catalogue } from '../catalogue';
import type { TableEncryption } from '../encryption';
import { ApiError, errorLine } from '../errors';

/** What the change routes need of their coordinator. */
export interface ChangeRoutesDeps {
  catalogue: Pick<Catalogue, 'require'>;
  encryption: Pick<TableEncryption, 'cipherFor' | 'decryptRow'>;
  changes: ChangeFeed;
}

/** How often an idle Server-Sent Events stream gets a comment, so proxies keep it open. */
const SSE_KEEPALIVE_MS = 15_000;

type Watch = {
  Params: { name: string };
  Querystring: { after?: string };
  Headers: { accept?: string; 'last-event-id'?: string };
};

/**
 * `GET /tables/:name/changes?after=<token>`: the table's committed changes, in its write
 * order, one event per row, for as long as the client stays: NDJSON lines
 * `{"token","op","_id","row"}`, or Server-Sent Events (`Accept: text/event-stream`; each
 * event's `id` is its token, so a browser's EventSource resumes with `Last-Event-ID`).
 * Without `after` it starts at the end. A token whose following events were trimmed is a 410.
 */
export function registerChangeRoutes(app: FastifyInstance, deps: ChangeRoutesDeps): void {
  app.get<Watch>('/tables/:name/changes', async (req, reply) => {
    const table = await deps.catalogue.require(req.params.name);
    if (!table.changes)
      throw new ApiError(
        409,
        'changes_off',
        `table ${table.name} keeps no change stream; turn it on with PATCH /tables/${table.name} {"changes": true} (dstore table changes ${table.name} on)`,
        { table: table.name },
      );
    const cipher = deps.encryption.cipherFor(table, 'read');
    const decrypt = cipher ? (r: Record<string, unknown>) => deps.encryption.decryptRow(table, cipher, r) : undefined;
    const sse = (req.headers.accept ?? '').includes('text/event-stream');
    const after = req.query.after ?? (sse ? req.headers['last-event-id'] : undefined);
    const from = await deps.changes.start(table.name, after);
    let open = true;
    reply.raw.on('close', () => (open = false));
    const format = sse
      ? (e: ChangeEvent) => `id: ${e.token}\nevent: change\ndata: ${JSON.stringify(e)}\n\n`
      : (e: ChangeEvent) => JSON.stringify(e) + '\n';
    async function* lines(): AsyncGenerator<string> {
      // The status and headers now (the body is piped once they are written), not with the
      // first event, which may be a long way off: the client knows at once the watch is on.
      reply.raw.flushHeaders();
      try {
        if (sse) yield ': watching\n\n';
        for await (const batch of deps.changes.follow(table.name, from, () => open, SSE_KEEPALIVE_MS)) {
          if (batch.length > 0) yield batch.map((e) => format(toChangeEvent(e, decrypt))).join('');
          else if (sse) yield ': keep-alive\n\n';
        }
      } catch (e) {
        yield sse ? `event: error\ndata: ${errorLine(e).trim()}\n\n` : errorLine(e);
      }
    }
    reply.header('content-type', sse ? 'text/event-stream' : 'application/x-ndjson');
    reply.header('cache-control', 'no-cache');
    return reply.send(Readable.from(lines()));
  });
}
