import { NOT_KEYS, type Keys } from './keys';

/**
 * Least-privilege Redis ACL rules (Redis >= 7.0, for `%R~` / `%W~` key selectors), built
 * from {@link Keys} so they follow every change of key spelling. `dstore acl worker <id>`
 * and `dstore acl coordinator` print them as an `ACL SETUSER` line; docs/security.md
 * explains each rule.
 */

// A valid id that cannot occur in a real key name, turned into a glob `*` afterwards.
const MARK = 'ACLxMARKx0';

function pattern(keyOf: (...ids: string[]) => string): string {
  // Every argument the mark (a key of a table and a write takes two).
  return keyOf(MARK, MARK).split(MARK).join('*');
}

/** Commands every dstore connection needs: connect, name itself, ready check, close. */
const CONNECTION_COMMANDS = [
  '+ping',
  '+info',
  '+client|setname',
  '+client|getname',
  '+client|id',
  '+select',
  '+quit',
  '+hello',
  '+auth',
  '+echo',
  '+cluster|slots',
  '+cluster|shards',
  '+cluster|nodes',
];

/**
 * Rules for worker `workerId`: read and acknowledge its own ops stream only; append to
 * any coordinator reply stream and the dead-letter stream without reading them; trim its
 * own stream; its
 * heartbeat (zset + status hash, through the heartbeat script, which also calls TIME);
 * subscribe to its own fetch channel. Nothing else: no other worker's stream, no catalogue,
 * no KEYS/FLUSH/CONFIG.
 */
export function workerAclRules(keys: Keys, workerId: string): string[] {
  return [
    'resetkeys',
    'resetchannels',
    '-@all',
    ...CONNECTION_COMMANDS,
    '+xgroup|create',
    '+xreadgroup',
    '+xack',
    '+xpending',
    // Its group's last delivered id, once its backlog is applied (ops-consumer.ts).
    '+xinfo|groups',
    '+xrevrange',
    '+xrange',
    '+xadd',
    '+xtrim',
    '+evalsha',
    '+eval',
    '+zadd',
    '+hset',
    // Its own previous status at start: is its shard older than what it had applied?
    '+hget',
    '+time',
    // Plain pub/sub on a single Redis, sharded pub/sub on a cluster.
    '+subscribe',
    '+unsubscribe',
    '+ssubscribe',
    '+sunsubscribe',
    `~${keys.workerOps(workerId)}`,
    `%W~${pattern(keys.coordReplies)}`,
    `%W~${keys.dead}`,
    // Full access: Redis checks the KEYS of EVAL/EVALSHA for read and write alike.
    `~${keys.workers}`,
    `~${keys.workerStatus}`,
    `&${keys.workerFetch(workerId)}`,
  ];
}

/**
 * Every key pattern of a prefix, found by walking {@link Keys}: fixed keys as they are,
 * per-id keys with `*` for the id, BullMQ's keys under its prefix.
 */
export function allKeyPatterns(keys: Keys): string[] {
  const out = new Set<string>();
  for (const [name, v] of Object.entries(keys)) {
    if (NOT_KEYS.includes(name as keyof Keys) || name === 'workerFetch') continue;
    if (name === 'bullPrefix') out.add(`${v as string}:*`);
    else if (typeof v === 'string') out.add(v);
    else if (typeof v === 'function') out.add(pattern(v as (...ids: string[]) => string));
  }
  return [...out];
}

/**
 * Rules for a coordinator: every dstore key (catalogue, placement, streams, BullMQ) and
 * every worker's fetch channel, with any command except the `@dangerous` ones (KEYS, FLUSHALL,
 * CONFIG, DEBUG, SHUTDOWN, CLIENT KILL, …); INFO is given back because ioredis and
 * BullMQ read it. No key outside the prefix.
 */
export function coordinatorAclRules(keys: Keys): string[] {
  return [
    'resetkeys',
    'resetchannels',
    '+@all',
    '-@dangerous',
    '+info',
    ...allKeyPatterns(keys).map((p) => `~${p}`),
    `&${pattern(keys.workerFetch)}`,
  ];
}

/** `ACL SETUSER <user> reset on >password <rules…>` as arguments (for redis.call or redis-cli). */
export function aclSetUserArgs(user: string, password: string, rules: string[]): string[] {
  return ['ACL', 'SETUSER', user, 'reset', 'on', `>${password}`, ...rules];
}
