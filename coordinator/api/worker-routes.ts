import type { FastifyInstance } from 'fastify';
import { NAME_PATTERN } from '../../common/names';
import type { ApiDeps } from './deps';
import { badRequest } from '../errors';
import { drainStatus, requestDrain } from '../jobs/drain';
import { planRebalance } from '../jobs/move';

type WorkerParams = { Params: { id: string } };

function checkId(id: string): string {
  if (!NAME_PATTERN.test(id))
    throw badRequest(`invalid worker id ${JSON.stringify(id)}: use 1-64 letters, digits, "_", "." or "-"`, {
      field: 'id',
    });
  return id;
}

/** A boolean option of the body (its type is checked by the route's schema, route-schemas.ts). */
function flag(body: unknown, name: string): boolean {
  return (body as Record<string, unknown> | null | undefined)?.[name] === true;
}

/** `POST|GET /workers/:id/drain`, `POST|GET /rebalance`. */
export function registerWorkerRoutes(
  app: FastifyInstance,
  coord: Pick<ApiDeps, 'ctx' | 'jobs' | 'log' | 'opts'>,
): void {
  app.post<WorkerParams & { Body: unknown }>('/workers/:id/drain', async (req, reply) => {
    const id = checkId(req.params.id);
    const { chunkIds, ...status } = await requestDrain(coord.ctx, id, flag(req.body, 'force'), coord.opts.replicas);
    // Start now rather than at the next sweep (which would also find them).
    if (chunkIds.length > 0) await coord.jobs.queueChunks(chunkIds);
    return reply.status(202).send(status);
  });
  app.get<WorkerParams>('/workers/:id/drain', async (req) => drainStatus(coord.ctx, checkId(req.params.id)));
  app.post<{ Body: unknown }>('/rebalance', async (req, reply) => {
    const dryRun = flag(req.body, 'dryRun');
    const plan = await planRebalance(coord.ctx);
    if (!dryRun) await coord.jobs.queueMoves(plan.moves);
    coord.log.info({ moves: plan.moves.length, before: plan.before, after: plan.after, dryRun }, 'rebalance planned');
    return reply.status(dryRun ? 200 : 202).send({ ...plan, dryRun });
  });
  app.get('/rebalance', async () => ({ pending: await coord.jobs.pendingMoves() }));
}
