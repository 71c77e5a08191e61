// Server-Sent Events over fetch, with a streaming parser.
//
// Not EventSource: it cannot send a header (so the key would go in the URL) and it needs one
// listener per event name (so a type the page does not know is silently dropped). Here every
// frame is handed over whatever its `event:` name, and the key travels in Authorization.
//
// Parsing follows the SSE format: frames end at a blank line; `field:value` lines (one
// optional space after the colon); `:` starts a comment (the server's keep-alive); several
// `data:` lines join with "\n". The parser yields to the browser every FRAME_BUDGET_MS of
// work, so a replay of a million buffered events never holds the main thread.

const FRAME_BUDGET_MS = 8;

export class SseParser {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.buffer = '';
  }

  /** Feed decoded text; calls onFrame({event, id, data}) for each complete frame. */
  push(text) {
    const buffer = this.buffer + text;
    let start = 0;
    for (;;) {
      let end = buffer.indexOf('\n\n', start);
      if (end < 0) break;
      this.frame(buffer.slice(start, end));
      start = end + 2;
    }
    this.buffer = buffer.slice(start);
  }

  frame(raw) {
    let event = 'message';
    let id = null;
    let data = null;
    for (const line of raw.split('\n')) {
      if (!line || line[0] === ':') continue;
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (name === 'event') event = value;
      else if (name === 'id') id = value;
      else if (name === 'data') data = data === null ? value : `${data}\n${value}`;
    }
    if (data !== null) this.onFrame({ event, id, data });
  }
}

const yieldToBrowser = () => new Promise((resolve) => setTimeout(resolve, 0));

/**
 * Read `url` as an event stream until it ends or `signal` aborts. Resolves when the server
 * ends the stream; rejects with the fetch/ApiError on failure (an abort resolves quietly).
 * `onOpen(response)` runs once the headers arrived with 200.
 */
export async function readStream(url, { headers, signal, onFrame, onOpen, openError }) {
  const response = await fetch(url, { headers: { Accept: 'text/event-stream', ...headers }, signal, cache: 'no-store' });
  if (!response.ok) throw await openError(response);
  if (onOpen) onOpen(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser(onFrame);
  let sliceStart = performance.now();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(decoder.decode(value, { stream: true }));
      // Chunks already buffered resolve read() at once, as microtasks: without this the
      // browser would get no turn until the buffer is empty.
      if (performance.now() - sliceStart > FRAME_BUDGET_MS) {
        await yieldToBrowser();
        sliceStart = performance.now();
      }
    }
  } catch (error) {
    if (signal && signal.aborted) return;
    throw error;
  } finally {
    reader.releaseLock();
  }
}
