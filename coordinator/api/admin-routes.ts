import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import type { Coordinator } from '../coordinator';

/** Every operator page lives under this prefix, so one access check can wrap all of them. */
export const ADMIN_PREFIX = '/admin';

/** The BullMQ dashboard (bull-board): repair (with the sweep that also cleans up) and scrub queues. */
export const QUEUE_DASHBOARD_PATH = `${ADMIN_PREFIX}/queues`;

/**
 * Mounts the operator pages in one encapsulated plugin at {@link ADMIN_PREFIX}: hooks
 * added inside it (e.g. an admin role check) cover every page and none of the data API.
 */
export function registerAdminRoutes(app: FastifyInstance, coord: Coordinator): void {
  void app.register(
    async (admin) => {
      const board = new FastifyAdapter();
      createBullBoard({
        queues: coord.jobs.queues().map((q) => new BullMQAdapter(q, { readOnlyMode: false })),
        serverAdapter: board,
        options: { uiConfig: { boardTitle: `dstore ${coord.keys.prefix}` } },
      });
      board.setBasePath(QUEUE_DASHBOARD_PATH);
      await admin.register(board.registerPlugin(), { prefix: '/queues' });
    },
    { prefix: ADMIN_PREFIX },
  );
}
