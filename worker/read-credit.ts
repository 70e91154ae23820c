import type { FetchCreditMessage } from '../common/messages';

/** The coordinator closed the read (limit reached, client gone, deadline): stop quietly. */
export class ReadClosed extends Error {
  override readonly name = 'ReadClosed';
}

/** Read credit of one FETCH: batches `seq < granted` may be sent (-1: the read is over). */
interface Credit {
  granted: number;
  /** When the coordinator last sent credit (or the FETCH arrived). */
  heard: number;
  wake?: () => void;
}

/**
 * Flow control of the FETCHes a worker answers: a FETCH with a `window` may have that many
 * batches out before the coordinator grants more (FETCH_CREDIT, as its client takes rows).
 * A FETCH is registered before it waits for a turn, so a read closed meanwhile is never
 * answered.
 */
export class ReadCredits {
  private readonly credits = new Map<string, Credit>();

  /** Starts counting credit for a FETCH with a window; returns what {@link close} takes. */
  open(req: string, window: number): object {
    const c: Credit = { granted: window, heard: Date.now() };
    this.credits.set(req, c);
    return c;
  }

  /**
   * Forgets a FETCH once answered: the credit `open` returned for it, only if it is still this
   * request's (a FETCH asked again under the same id, after `unlisted`, has its own).
   */
  close(req: string, opened: object | undefined): void {
    if (opened !== undefined && this.credits.get(req) === opened) this.credits.delete(req);
  }

  /** Whether the coordinator closed this read. */
  isClosed(req: string): boolean {
    return this.credits.get(req)?.granted === -1;
  }

  /** A FETCH_CREDIT arrived: more batches may be sent, or (-1) none. */
  onCredit(msg: FetchCreditMessage): void {
    const c = this.credits.get(msg.req);
    if (!c) return;
    c.heard = Date.now();
    if (msg.granted === -1 || msg.granted > c.granted) c.granted = msg.granted;
    c.wake?.();
  }

  /** Closes every read (the worker stops). */
  closeAll(): void {
    for (const c of this.credits.values()) {
      c.granted = -1;
      c.wake?.();
    }
  }

  /**
   * Waits until batch `seq` of `req` may be sent (at once without a window). Without any
   * credit for `timeoutMs` the coordinator is gone (it re-sends credit while it waits for a
   * slow client): throws. Throws {@link ReadClosed} once the read is over.
   */
  async wait(req: string, seq: number, timeoutMs: number): Promise<void> {
    const c = this.credits.get(req);
    if (!c) return;
    while (c.granted !== -1 && seq >= c.granted) {
      if (Date.now() - c.heard > timeoutMs) throw new Error(`no read credit from the coordinator for ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(10, Math.min(1000, timeoutMs / 4)));
        c.wake = () => (clearTimeout(timer), resolve());
      });
      c.wake = undefined;
    }
    if (c.granted === -1) throw new ReadClosed('the coordinator closed the read');
  }
}
