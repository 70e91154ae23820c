/** Keeps at most `n` tasks running: the client operations a nemesis run has in flight at once. */
export class Lanes {
  private readonly running = new Set<Promise<void>>();
  constructor(private readonly n: number) {}

  /** Waits for a free lane, then starts `task` without waiting for it. */
  async run(task: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.n) await Promise.race(this.running);
    const p: Promise<void> = task().finally(() => this.running.delete(p));
    this.running.add(p);
  }

  /** Resolves once no task runs. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.race(this.running);
  }
}
