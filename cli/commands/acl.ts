import * as crypto from 'node:crypto';
import type { Command } from 'commander';
import { aclSetUserArgs, coordinatorAclRules, workerAclRules } from '../../common/acl';
import { loadCommonOptions } from '../../common/config';
import { makeKeys } from '../../common/keys';
import { assertName } from '../../common/names';

/** One word of the printed line, single-quoted unless plainly safe, so it pastes into a shell or redis-cli. */
function word(w: string): string {
  return /^[A-Za-z0-9_.:@%+\-/=,]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}

/**
 * `dstore acl worker <id>` / `dstore acl coordinator`: prints the `ACL SETUSER` line of a
 * least-privilege Redis user for the current DSTORE_PREFIX (see docs/security.md).
 */
export function registerAclCommand(program: Command): void {
  const acl = program
    .command('acl')
    .summary('print least-privilege Redis ACL users')
    .description(
      'print an ACL SETUSER line (for redis-cli) of a least-privilege Redis user for the keys of DSTORE_PREFIX; see docs/security.md',
    );
  const print = (user: string, password: string | undefined, rules: string[]) => {
    const pw = password ?? crypto.randomBytes(24).toString('hex');
    process.stdout.write(aclSetUserArgs(user, pw, rules).map(word).join(' ') + '\n');
  };
  acl
    .command('worker <id>')
    .description('the user of worker <id>: its own ops stream, replies, dead letters, heartbeat and the fetch channel')
    .option('--user <name>', 'ACL user name (default: dstore-worker-<id>)')
    .option('--password <secret>', 'password (default: a random one, printed in the line)')
    .action((id: string, o: { user?: string; password?: string }) => {
      assertName('worker id', id);
      print(o.user ?? `dstore-worker-${id}`, o.password, workerAclRules(makeKeys(loadCommonOptions().prefix), id));
    });
  acl
    .command('coordinator')
    .description('the user of coordinators: every key of the prefix, no @dangerous command')
    .option('--user <name>', 'ACL user name (default: dstore-coordinator)')
    .option('--password <secret>', 'password (default: a random one, printed in the line)')
    .action((o: { user?: string; password?: string }) => {
      print(o.user ?? 'dstore-coordinator', o.password, coordinatorAclRules(makeKeys(loadCommonOptions().prefix)));
    });
}
