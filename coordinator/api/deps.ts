import type { CoordinatorOptions } from '../../common/config';
import type { Keys } from '../../common/keys';
import type { Logger } from '../../common/logger';
import type { DstoreRedis } from '../../common/redis';
import type { Catalogue } from '../catalogue';
import type { ClusterStatus } from '../cluster-status';
import type { CoordinatorContext } from '../context';
import type { Ingest } from '../ingest';
import type { Jobs } from '../jobs/queues';
import type { Backups } from '../backup';
import type { ChangeFeed } from '../changes';
import type { TableEncryption } from '../encryption';
import type { WorkerDirectory } from '../membership';
import type { CoordinatorMetrics } from '../metrics';
import type { Mutations } from '../mutations';
import type { QueryService } from '../query-service';

/**
 * What the HTTP API needs of its coordinator. Each route module takes only the members it
 * uses (`Pick<ApiDeps, …>`), never the Coordinator class, so the API does not import the
 * process that serves it.
 */
export interface ApiDeps {
  /** The coordinator's id (request ids, `/healthz`). */
  id: string;
  opts: CoordinatorOptions;
  cmd: DstoreRedis;
  keys: Keys;
  ctx: CoordinatorContext;
  workers: WorkerDirectory;
  catalogue: Catalogue;
  ingest: Ingest;
  mutations: Mutations;
  queries: QueryService;
  jobs: Jobs;
  /** Backups in progress (`/admin/backups`). */
  backups: Backups;
  /** Encrypted columns: the key check value a restore compares; decrypting change events. */
  encryption: Pick<TableEncryption, 'keyCheck' | 'cipherFor' | 'decryptRow'>;
  /** Tables' change streams (`GET /tables/:name/changes`). */
  changes: ChangeFeed;
  metrics: CoordinatorMetrics;
  log: Logger;
  /** One look at the cluster (`GET /status`). */
  status(): Promise<ClusterStatus>;
}
