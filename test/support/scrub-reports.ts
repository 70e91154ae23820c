import type Redis from 'ioredis';
import type { Keys } from '../../common/keys';
import type { ScrubReport } from '../../coordinator/jobs/scrub';

/**
 * Every scrub report in the `scrub:reports` stream that started at or after `since` (ms),
 * oldest first. The stream, not `scrub:last`: a pass that rebuilt copies is overwritten by
 * the next pass within `DSTORE_SCRUB_MS`, and a poller that is late by one pass misses it.
 */
export async function scrubReportsSince(redis: Redis, keys: Keys, since: number): Promise<ScrubReport[]> {
  const entries = await redis.xrange(keys.scrubReports, '-', '+');
  return entries
    .map(([, fields]) => JSON.parse(fields[fields.indexOf('report') + 1]) as ScrubReport)
    .filter((r) => r.at >= since);
}
