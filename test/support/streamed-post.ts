/**
 * A POST whose body is sent line by line as the test pushes them (`null` ends it), so the
 * request stays open between chunks.
 */
export function streamedPost(
  url: string,
  table: string,
  onConflict?: string,
): { push: (line: string | null) => void; answer: Promise<Response> } {
  let push!: (line: string | null) => void;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      push = (line) => (line === null ? controller.close() : controller.enqueue(new TextEncoder().encode(line)));
    },
  });
  const answer = fetch(`${url}/tables/${table}/records${onConflict ? `?onConflict=${onConflict}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body,
    duplex: 'half',
  } as RequestInit);
  return { push, answer };
}
