import type { Command } from 'commander';
import * as path from 'node:path';
import { readInt } from '../../common/config';
import { LocalCluster } from '../local-cluster';

/** `dstore up`: a local cluster in one command; Ctrl-C stops it all. */
export function registerUpCommand(program: Command): void {
  program
    .command('up')
    .description('start a local cluster: Redis (unless REDIS_URL is set), one coordinator and N workers; Ctrl-C stops everything')
    .option('-w, --workers <n>', 'number of workers', '3')
    .option('-r, --replicas <n>', 'replication factor (copies of each chunk)', process.env.DSTORE_REPLICAS ?? '2')
    .option('-p, --port <port>', 'coordinator port (0 picks a free one)', process.env.DSTORE_PORT ?? '7070')
    .option('-d, --data-dir <dir>', 'where shards, Redis data and logs go', process.env.DSTORE_DATA_DIR ?? 'dstore-data')
    .action(async (o: { workers: string; replicas: string; port: string; dataDir: string }) => {
      const workers = readInt({ '--workers': o.workers }, '--workers', 3, 1, 256);
      const replicas = readInt({ '--replicas': o.replicas }, '--replicas', 2, 1, 16);
      const port = readInt({ '--port': o.port }, '--port', 7070, 0, 65535);
      const cluster = new LocalCluster({
        workers,
        replicas,
        port,
        dataDir: path.resolve(o.dataDir),
        redisUrl: process.env.REDIS_URL || undefined,
        say: (l) => process.stdout.write(l + '\n'),
      });
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        process.stdout.write(`\n${signal}: stopping the cluster…\n`);
        await cluster.stop();
        process.stdout.write('stopped\n');
        process.exit(0);
      };
      process.on('SIGINT', () => void stop('SIGINT'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
      try {
        const url = await cluster.start();
        process.stdout.write(`dstore is up: ${url}  (${workers} workers, R=${replicas}; logs in ${path.resolve(o.dataDir, 'logs')})\n`);
        process.stdout.write(`try: DSTORE_URL=${url} npx dstore table create demo && npx dstore workers --url ${url}\n`);
      } catch (e) {
        await cluster.stop();
        throw e;
      }
      await new Promise(() => undefined);
    });
}
