export { Worker } from './worker';
export { ShardStore } from './shard-store';
export type { ApplyResult, LocalTable, ShardStats } from './shard-store';
export { OpsConsumer } from './ops-consumer';
export { FetchResponder } from './fetch-responder';
export { resolveWorkerId, type WorkerStatus, type WorkerState } from './membership';
export { planFetch, type FetchPlan } from './fetch-query';
