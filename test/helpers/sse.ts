// The tests' one SSE reader: events as they arrive (for streams a test watches live), or all of a
// finished response. Data that is JSON is parsed; anything else ([DONE]) stays a string.
export interface SseEvent { event: string, data: any } // eslint-disable-line @typescript-eslint/no-explicit-any -- event payloads vary by route

function parseFrame (frame: string): SseEvent {
  let event = 'message'
  let data = ''
  for (const line of frame.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice(7)
    if (line.startsWith('data: ')) data += line.slice(6)
  }
  try { return { event, data: JSON.parse(data) } } catch { return { event, data } }
}

/** Yields a response's SSE events as they arrive. */
export async function * sseEvents (res: Response): AsyncGenerator<SseEvent> {
  if (res.body === null) return
  const decoder = new TextDecoder()
  let buf = ''
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk as Uint8Array, { stream: true })
    let end: number
    while ((end = buf.indexOf('\n\n')) !== -1) {
      const frame = buf.slice(0, end)
      buf = buf.slice(end + 2)
      if (frame.trim() !== '') yield parseFrame(frame)
    }
  }
}

/** Reads a whole SSE response into its events. */
export async function readSse (res: Response): Promise<SseEvent[]> {
  const events: SseEvent[] = []
  for await (const e of sseEvents(res)) events.push(e)
  return events
}
