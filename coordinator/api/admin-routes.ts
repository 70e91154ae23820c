import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from './deps';
import {
  clearDeadLetters,
  DEFAULT_DEAD_LETTER_LIMIT,
  listDeadLetters,
  MAX_DEAD_LETTER_LIMIT,
  type DeadLetterSelection,
} from '../dead-letters';
import { badRequest } from '../errors';
import { registerBackupRoutes } from './backup-routes';

/** Every operator page lives under this prefix, so one access check can wrap all of them. */
export const ADMIN_PREFIX = '/admin';

/** The BullMQ dashboard (bull-board): repair (with the sweep that also cleans up) and scrub queues. */
export const QUEUE_DASHBOARD_PATH = `${ADMIN_PREFIX}/queues`;

/**
 * The dashboard's title: `dstore` under the default prefix (also `dstore`), else
 * `dstore · <prefix>`, so the prefix is named once and only when it tells something.
 */
export function boardTitle(prefix: string): string {
  return prefix === 'dstore' ? 'dstore' : `dstore · ${prefix}`;
}

type DeadLetterQuery = { Querystring: Record<string, string | string[] | undefined> };

const STREAM_ID = /^\d{1,20}(-\d{1,20})?$/;

/** One value of a query parameter; a repeated parameter is a 400 naming it. */
function param(q: DeadLetterQuery['Querystring'], name: string): string | undefined {
  const v = q[name];
  if (Array.isArray(v)) throw badRequest(`give ?${name}= once`, { field: name });
  return v;
}

function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_DEAD_LETTER_LIMIT;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > MAX_DEAD_LETTER_LIMIT)
    throw badRequest(`?limit= must be a whole number from 1 to ${MAX_DEAD_LETTER_LIMIT}, got ${JSON.stringify(raw)}`, {
      field: 'limit',
    });
  return n;
}

function parseSelection(q: DeadLetterQuery['Querystring']): DeadLetterSelection {
  const before = param(q, 'before');
  const ids = param(q, 'ids');
  if (before !== undefined && ids !== undefined)
    throw badRequest('give ?before= or ?ids=, not both', { field: 'before' });
  if (before !== undefined) {
    if (!STREAM_ID.test(before))
      throw badRequest(`?before= must be a dead-letter id such as 1700000000000-0, got ${JSON.stringify(before)}`, {
        field: 'before',
      });
    return { before };
  }
  if (ids !== undefined) {
    const list = ids.split(',').map((s) => s.trim());
    const bad = list.find((id) => !STREAM_ID.test(id));
    if (bad !== undefined)
      throw badRequest(
        `?ids= must be comma-separated dead-letter ids such as 1700000000000-0, got ${JSON.stringify(bad)}`,
        { field: 'ids' },
      );
    if (list.length > 10_000)
      throw badRequest('?ids= lists more than 10000 ids; clear them in several requests', { field: 'ids' });
    return { ids: list };
  }
  return { all: true };
}

/**
 * Mounts the operator pages in one encapsulated plugin at {@link ADMIN_PREFIX}: hooks
 * added inside it (e.g. an admin role check) cover every page and none of the data API.
 * Besides the queue dashboard: `GET /admin/dead-letters?limit=N` (newest first, with the
 * total) and `DELETE /admin/dead-letters` (all, `?before=<id>` or `?ids=<id>,…`) → `{deleted}`;
 * the backup routes (backup-routes.ts).
 */
export function registerAdminRoutes(
  app: FastifyInstance,
  coord: Pick<ApiDeps, 'backups' | 'cmd' | 'encryption' | 'jobs' | 'keys' | 'log'>,
): void {
  void app.register(
    async (admin) => {
      const board = new FastifyAdapter();
      createBullBoard({
        queues: coord.jobs.queues().map((q) => new BullMQAdapter(q, { readOnlyMode: false })),
        serverAdapter: board,
        options: { uiConfig: { boardTitle: boardTitle(coord.keys.prefix) } },
      });
      board.setBasePath(QUEUE_DASHBOARD_PATH);
      await admin.register(board.registerPlugin(), { prefix: '/queues' });
      admin.get<DeadLetterQuery>('/dead-letters', async (req) =>
        listDeadLetters(coord.cmd, coord.keys.dead, parseLimit(param(req.query, 'limit'))),
      );
      admin.delete<DeadLetterQuery>('/dead-letters', async (req) => {
        const sel = parseSelection(req.query);
        const deleted = await clearDeadLetters(coord.cmd, coord.keys.dead, sel);
        coord.log.info(
          {
            deleted,
            selection: 'all' in sel ? 'all' : 'before' in sel ? `before ${sel.before}` : `${sel.ids.length} id(s)`,
          },
          'dead letters cleared',
        );
        return { deleted };
      });
      registerBackupRoutes(admin, { backups: coord.backups, keyCheck: coord.encryption.keyCheck });
    },
    { prefix: ADMIN_PREFIX },
  );
}
