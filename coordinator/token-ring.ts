/**
 * The token round-robin of the original program, with replication: chunk number
 * `token` goes to the live worker at `token mod n` in the sorted live list, then to the
 * next R-1 distinct workers. Sorting makes every coordinator agree on the ring; the
 * token itself is one global counter in Redis (`INCRBY <prefix>:token`), so placement
 * stays even however many coordinators share the work.
 */
export function placeChunk(liveSorted: readonly string[], token: number, replicas: number): string[] {
  const n = liveSorted.length;
  if (n === 0) return [];
  const r = Math.min(replicas, n);
  const start = ((token % n) + n) % n;
  const out: string[] = [];
  for (let i = 0; i < r; i++) out.push(liveSorted[(start + i) % n]);
  return out;
}
