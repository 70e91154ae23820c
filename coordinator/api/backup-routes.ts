import type { FastifyInstance, FastifyReply } from 'fastify';
import { Readable } from 'node:stream';
import type { Backups } from '../backup';
import { errorLine } from '../errors';

type ById = { Params: { id: string } };

/** What the backup routes need of their coordinator. */
export interface BackupRoutesDeps {
  backups: Backups;
  /** The key check value of this coordinator's DSTORE_ENCRYPTION_KEY (none: undefined). */
  keyCheck: string | undefined;
}

/**
 * The backup routes, mounted inside the admin plugin (admin role): `POST /admin/backups`
 * takes the cut and answers it; `GET /admin/backups/:id` reports the rows read of each
 * table; `GET /admin/backups/:id/tables/:name` streams one table's rows as of the cut
 * (NDJSON, as stored, ending with a `{"_backup": {"table", "rows"}}` line, so a cut-off
 * stream is told from a whole one); `DELETE /admin/backups/:id` ends it. `GET
 * /admin/encryption` answers the key check value a restore compares with its backup's.
 */
export function registerBackupRoutes(admin: FastifyInstance, deps: BackupRoutesDeps): void {
  admin.post('/backups', async (_req, reply) => reply.status(201).send(await deps.backups.start()));
  admin.get<ById>('/backups/:id', async (req) => deps.backups.progress(req.params.id));
  admin.get<{ Params: { id: string; name: string } }>('/backups/:id/tables/:name', async (req, reply) =>
    streamRows(reply, deps.backups.rows(req.params.id, req.params.name), req.params.name),
  );
  admin.delete<ById>('/backups/:id', async (req) => {
    await deps.backups.end(req.params.id);
    return { ended: req.params.id };
  });
  admin.get('/encryption', async () => ({ keyCheck: deps.keyCheck ?? null }));
}

/**
 * Streams a table's rows. The first piece is awaited before the status goes out, so a
 * failure known early (no such backup, no replica) is a proper 4xx/5xx; a later failure
 * ends the stream with an `{"_error": …}` line and no `_backup` trailer.
 */
async function streamRows(
  reply: FastifyReply,
  rows: AsyncGenerator<{ rows: string; count: number }>,
  table: string,
): Promise<FastifyReply> {
  const first = await rows.next();
  async function* lines(): AsyncGenerator<string> {
    let total = 0;
    try {
      for (let r = first; !r.done; r = await rows.next()) {
        total += r.value.count;
        if (r.value.count > 0) yield r.value.rows + '\n';
      }
      yield JSON.stringify({ _backup: { table, rows: total } }) + '\n';
    } catch (e) {
      yield errorLine(e);
    } finally {
      await rows.return(undefined);
    }
  }
  reply.header('content-type', 'application/x-ndjson');
  return reply.send(Readable.from(lines()));
}
