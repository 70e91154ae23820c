/** Public helpers of the test harness; see each module for details. */
export { dropPrefix, sharedRedis, startRedis, uniquePrefix } from './redis';
export type { StartRedisOptions, TestRedis } from './redis';
export { killAllChildren, projectRoot, spawnNode, startWorkerProcess, tempDir } from './processes';
export type { ChildHandle, SpawnOptions, WorkerProcessOptions } from './processes';
export { sleep, waitFor } from './wait';
export type { WaitOptions } from './wait';
