import type Redis from 'ioredis';
import type { Keys } from '../../common/keys';
import type { ScrubReport } from '../../coordinator/jobs/scrub';

/**
 * Every scrub report in the `scrub:reports` stream that started at or after `since` (ms),
 * oldest first. The stream, not `scrub:last`: a pass that rebuilt copies is overwritten by
 * the next pass within `DSTORE_SCRUB_MS`, and a poller that is late by one pass misses it.
 */
export async function scrubReportsSince(redis: Redis, keys: Keys, since: number): Promise<ScrubReport[]> {
  // A report is added when its pass ends, so its entry id (Redis time in ms) is ≥ its `at`
  // give or take the clocks' skew (a minute allowed): start the range there instead of
  // reading all ~1000 kept entries on every poll.
  const from = Math.max(0, Math.floor(since) - 60_000);
  const entries = await redis.xrange(keys.scrubReports, `${from}-0`, '+');
  return entries
    .map(([, fields]) => JSON.parse(fields[fields.indexOf('report') + 1]) as ScrubReport)
    .filter((r) => r.at >= since);
}
