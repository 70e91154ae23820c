import type { Command } from 'commander';
import * as path from 'node:path';
import { readCliUrl, readInt } from '../../common/config';
import { readFlagAs, settingOf } from '../../common/settings';
import { envDefault } from '../../common/settings-doc';
import { LocalCluster, shownPath, stopOnSignals } from '../local-cluster';

/** Writes a line, ignoring a terminal that is gone (after a hang-up the cluster must still be stopped). */
function writer(stream: NodeJS.WriteStream): (line: string) => void {
  stream.on('error', () => undefined);
  return (line) => {
    try {
      stream.write(line + '\n');
    } catch {
      // EIO / EPIPE: nobody reads any more
    }
  };
}

/** `dstore up`: a local cluster in one command, supervised; Ctrl-C stops it all. */
export function registerUpCommand(program: Command): void {
  program
    .command('up')
    .description(
      'start a local cluster and keep it running: Redis (unless REDIS_URL is set), one coordinator and N workers, each restarted if it dies; Ctrl-C stops everything',
    )
    .option('-w, --workers <n>', 'number of active workers (new ones with new ids when the data dir has fewer)', '3')
    .option(
      '-r, --replicas <n>',
      'replication factor (copies of each chunk)',
      process.env.DSTORE_REPLICAS ?? envDefault(settingOf('DSTORE_REPLICAS')),
    )
    .option(
      '-p, --port <port>',
      'coordinator port (0 picks a free one)',
      process.env.DSTORE_PORT ?? envDefault(settingOf('DSTORE_PORT')),
    )
    .option(
      '-d, --data-dir <dir>',
      'where shards, Redis data and logs go',
      process.env.DSTORE_DATA_DIR ?? envDefault(settingOf('DSTORE_DATA_DIR')),
    )
    .option('--no-restart', 'do not restart a worker, the coordinator or redis-server that dies (only report it)')
    .action(async (o: { workers: string; replicas: string; port: string; dataDir: string; restart: boolean }) => {
      const workers = readInt({ '--workers': o.workers }, '--workers', 3, 1, 256);
      const replicas = readFlagAs('DSTORE_REPLICAS', o.replicas, '--replicas');
      const port = readFlagAs('DSTORE_PORT', o.port, '--port');
      const dataDir = path.resolve(o.dataDir);
      const say = writer(process.stdout);
      const report = writer(process.stderr);
      const cluster = new LocalCluster({
        workers,
        replicas,
        port,
        dataDir,
        redisUrl: process.env.REDIS_URL || undefined,
        restart: o.restart,
        say,
        report,
      });
      stopOnSignals(cluster, say, () => {
        say('stopped');
        process.exit(0);
      });
      try {
        const url = await cluster.start();
        const logs = shownPath(path.join(dataDir, 'logs'));
        const active = cluster.workers.filter((w) => w.state !== 'draining');
        const made = cluster.workers.filter((w) => w.state === 'new').map((w) => w.id);
        const draining = cluster.workers.filter((w) => w.state === 'draining').map((w) => w.id);
        say(
          `workers    ${active.map((w) => w.id).join(' ')}${made.length && made.length < active.length ? ` (new: ${made.join(' ')})` : ''}${draining.length ? `; still draining: ${draining.join(' ')}` : ''}`,
        );
        if (active.length > workers)
          say(
            `           ${active.length} active workers hold shards in ${shownPath(dataDir)}: all run (--workers ${workers}); retire some with dstore worker drain ID`,
          );
        for (const w of cluster.retired)
          say(
            `           ${w.id} was drained and retired: not started (its directory ${shownPath(w.dir)} may be deleted)`,
          );
        say(
          `dstore is up: ${url}  (${active.length} workers, R=${replicas}; logs in ${logs}; ${o.restart ? 'a process that dies is restarted' : 'nothing is restarted (--no-restart)'})`,
        );
        const urlFlag = url === readCliUrl({}) ? '' : `DSTORE_URL=${url} `;
        say(`try:       ${urlFlag}npx dstore table create demo && ${urlFlag}npx dstore workers`);
        say(`add a worker (each one its own DSTORE_DATA_DIR), then npx dstore rebalance:`);
        say(`           ${cluster.addWorkerCommand()}`);
      } catch (e) {
        await cluster.stop();
        throw e;
      }
      await new Promise(() => undefined);
    });
}
