export { Worker } from './worker';
export { ShardStore } from './shard-store';
export type { ApplyResult, LocalTable, ShardStats } from './shard-store';
export { OpsConsumer } from './ops-consumer';
export { FetchResponder } from './fetch-responder';
export { resolveWorkerId } from './membership';
export type { WorkerStatus, WorkerState, WorkerCounters, StorageState } from '../common/worker-status';
export { planFetch, type FetchPlan } from './fetch-query';
