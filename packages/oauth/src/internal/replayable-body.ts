/** A request body that can be sent a second time, if it fitted in the buffer. */
export interface ReplayableBody {
  readonly replayable: boolean;
  /** True when the first send streams (the body outgrew the buffer). */
  readonly streaming: boolean;
  /** The body for the first send. */
  first(): NonNullable<RequestInit['body']>;
  /** The body for the retry; only when `replayable`. */
  replay(): NonNullable<RequestInit['body']>;
}

/**
 * Reads a request body into memory up to `limit` bytes. A body that fits is
 * replayable byte for byte. One that does not is sent once as a stream (the
 * buffered head, then the rest), and can never be sent half: a retry is refused.
 */
export async function bufferBody(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<ReplayableBody> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      const bytes = concat(chunks, size);
      return { replayable: true, streaming: false, first: () => bytes, replay: () => bytes };
    }
    chunks.push(value);
    size += value.byteLength;
    if (size > limit) break;
  }
  let used = false;
  const rest = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return {
    replayable: false,
    streaming: true,
    first: () => {
      if (used) throw new Error('a streamed body can be sent only once');
      used = true;
      return rest;
    },
    replay: () => {
      throw new Error('a streamed body larger than the replay buffer cannot be sent again');
    },
  };
}

function concat(chunks: readonly Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0];
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
