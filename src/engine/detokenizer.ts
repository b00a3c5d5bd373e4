// Streaming detokenization over bytes, with stop sequences matched on text.
//
// Byte-level BPE can split one character's UTF-8 bytes across tokens. Decoding each token alone
// would emit U+FFFD halves; decoding the whole text each step is quadratic. We keep a streaming
// UTF-8 decoder (it holds an incomplete character until its last byte arrives), so text is
// emitted exactly once, never broken. Stop sequences can also straddle tokens: text that could
// still become a stop sequence is held back until it cannot (as vLLM does), so a stop string is
// never streamed and then retracted.
//
// SentencePiece tokenizers write a space as part of the next word ("▁the" is " the"), and decoding
// a document drops the space of its first word (the one the normalizer prepended). A generation that
// starts a document (nothing but special tokens before it) does the same: `dropLeadingSpace` drops
// one space byte at the start of the first token that has any bytes, exactly as Hugging Face's Strip
// decoder does on the whole text. A generation that continues a text keeps its space: it separates
// the new word from the prompt's last one.

export interface PushResult {
  /** Text released by this token (may be empty while bytes or a possible stop prefix are held). */
  text: string
  /** The stop sequence this token completed, if any. */
  stop?: string
}

export class StreamingDetokenizer {
  private readonly decoder = new TextDecoder('utf-8')
  private text = ''
  private released = 0
  private stopped = false

  constructor (
    private readonly tokenBytes: (id: number) => Uint8Array,
    private readonly stops: readonly string[] = [],
    private dropLeadingSpace = false
  ) {}

  push (id: number): PushResult {
    if (this.stopped) return { text: '' }
    const before = this.text.length
    let bytes = this.tokenBytes(id)
    if (this.dropLeadingSpace && bytes.length > 0) {
      this.dropLeadingSpace = false
      if (bytes[0] === 0x20) bytes = bytes.subarray(1)
    }
    this.text += this.decoder.decode(bytes, { stream: true })
    return this.check(before)
  }

  /** Ends the stream: an incomplete trailing character becomes U+FFFD, held text is released. */
  finish (): string {
    if (this.stopped) return ''
    const before = this.text.length
    this.text += this.decoder.decode()
    const r = this.check(before)
    if (r.stop !== undefined) return r.text
    return r.text + this.release(this.text.length)
  }

  /** All text generated so far, up to (not including) a matched stop sequence. */
  get generated (): string { return this.text }

  private check (before: number): PushResult {
    let at = -1
    let which: string | undefined
    for (const stop of this.stops) {
      const i = this.text.indexOf(stop, Math.max(0, before - stop.length + 1))
      if (i !== -1 && (at === -1 || i < at)) { at = i; which = stop }
    }
    if (which !== undefined) {
      this.text = this.text.slice(0, at)
      this.stopped = true
      return { text: this.release(at), stop: which }
    }
    return { text: this.release(this.text.length - this.heldBack()) }
  }

  /** Length of the longest tail of the text that is a proper prefix of some stop sequence. */
  private heldBack (): number {
    let held = 0
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, this.text.length); n > held; n--) {
        if (this.text.endsWith(stop.slice(0, n))) { held = n; break }
      }
    }
    return held
  }

  private release (upTo: number): string {
    if (upTo <= this.released) return ''
    const out = this.text.slice(this.released, upTo)
    this.released = upTo
    return out
  }
}
