import { strict as assert } from 'node:assert';
import { placeChunk } from '../../coordinator/token-ring';

const workers = (n: number) => Array.from({ length: n }, (_, i) => `w${String(i).padStart(2, '0')}`);

describe('token ring placement', () => {
  it('places each chunk on R distinct live workers', () => {
    for (let n = 1; n <= 7; n++) {
      const live = workers(n);
      for (let r = 1; r <= n; r++) {
        for (let token = 0; token < 3 * n; token++) {
          const placed = placeChunk(live, token, r);
          assert.equal(placed.length, r, `n=${n} r=${r} token=${token}`);
          assert.equal(new Set(placed).size, r, `duplicates in ${placed.join(',')}`);
          for (const w of placed) assert.ok(live.includes(w), `${w} is not live`);
        }
      }
    }
  });

  it('caps the replica count at the number of live workers', () => {
    const live = workers(3);
    for (const r of [3, 4, 10]) {
      const placed = placeChunk(live, 5, r);
      assert.equal(placed.length, 3);
      assert.deepEqual([...placed].sort(), live);
    }
    assert.deepEqual(placeChunk(['only'], 123, 3), ['only']);
  });

  it('places nothing when no worker is live', () => {
    assert.deepEqual(placeChunk([], 7, 2), []);
  });

  it('starts at token mod n and continues round the sorted ring', () => {
    const live = ['a', 'b', 'c', 'd', 'e'];
    assert.deepEqual(placeChunk(live, 0, 2), ['a', 'b']);
    assert.deepEqual(placeChunk(live, 3, 3), ['d', 'e', 'a']);
    assert.deepEqual(placeChunk(live, 4, 2), ['e', 'a']);
    assert.deepEqual(placeChunk(live, 12, 1), ['c']);
    assert.deepEqual(placeChunk(live, 1_000_000_004, 3), ['e', 'a', 'b']);
    assert.deepEqual(placeChunk(live, 2 ** 40 + 1, 1), [live[(2 ** 40 + 1) % 5]]);
  });

  it('wraps negative tokens onto the ring', () => {
    const live = ['a', 'b', 'c'];
    assert.deepEqual(placeChunk(live, -1, 2), ['c', 'a']);
    assert.deepEqual(placeChunk(live, -3, 1), ['a']);
    assert.deepEqual(placeChunk(live, -5, 3), ['b', 'c', 'a']);
  });

  it('gives the same placement for the same token and live list', () => {
    const live = workers(6);
    for (let token = 0; token < 50; token++)
      assert.deepEqual(placeChunk(live, token, 3), placeChunk([...live], token, 3));
  });

  it('makes each worker first replica floor or ceil of T/n times over T consecutive tokens', () => {
    const tokens = 10_000;
    for (let n = 3; n <= 7; n++) {
      const live = workers(n);
      for (let r = 1; r <= 3; r++) {
        for (const start of [0, 1_234_567]) {
          const first = new Map<string, number>(live.map((w) => [w, 0]));
          for (let t = start; t < start + tokens; t++) {
            const w = placeChunk(live, t, r)[0];
            first.set(w, first.get(w)! + 1);
          }
          const lo = Math.floor(tokens / n);
          const hi = Math.ceil(tokens / n);
          for (const [w, c] of first)
            assert.ok(
              c === lo || c === hi,
              `n=${n} r=${r} start=${start}: ${w} first replica ${c} times, want ${lo} or ${hi}`,
            );
        }
      }
    }
  });

  // Replicas go to the next R-1 workers of the ring, so a worker holds the sum of R
  // neighbours' first-replica counts: when T is not a multiple of n, the held counts
  // spread over [R*floor(T/n), R*ceil(T/n)] (n=6, R=2: 3332..3334), not within ±1 of each other.
  it('makes each worker hold between R*floor(T/n) and R*ceil(T/n) of T consecutive chunks', () => {
    const tokens = 10_000;
    for (let n = 3; n <= 7; n++) {
      const live = workers(n);
      for (let r = 1; r <= 3; r++) {
        for (const start of [0, 1_234_567]) {
          const held = new Map<string, number>(live.map((w) => [w, 0]));
          for (let t = start; t < start + tokens; t++)
            for (const w of placeChunk(live, t, r)) held.set(w, held.get(w)! + 1);
          const counts = [...held.values()];
          assert.equal(
            counts.reduce((a, b) => a + b, 0),
            tokens * r,
          );
          const lo = r * Math.floor(tokens / n);
          const hi = r * Math.ceil(tokens / n);
          for (const [w, c] of held)
            assert.ok(c >= lo && c <= hi, `n=${n} r=${r} start=${start}: ${w} holds ${c}, want ${lo}..${hi}`);
          if (r === 1) assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `n=${n}: ${counts.join(',')}`);
        }
      }
    }
  });

  it('makes every worker hold exactly R*k chunks over k*n consecutive tokens', () => {
    for (let n = 3; n <= 7; n++) {
      const live = workers(n);
      for (let r = 1; r <= 3; r++) {
        const k = Math.floor(10_000 / n);
        const held = new Map<string, number>(live.map((w) => [w, 0]));
        for (let t = 17; t < 17 + k * n; t++) for (const w of placeChunk(live, t, r)) held.set(w, held.get(w)! + 1);
        for (const [w, c] of held) assert.equal(c, r * k, `n=${n} r=${r}: ${w}`);
      }
    }
  });
});
