// SentencePiece-style BPE (Llama 1/2, Mistral): spaces are written as "▁" inside pieces, and with
// byte fallback a character outside the vocabulary is spelled as byte tokens "<0xNN>". The
// tokenizer.json decoder says how pieces become text; we accept the two forms Hugging Face writes:
//
//   Sequence [Replace "▁"→" ", ByteFallback, Fuse, Strip " " start=1]   (Llama 2, Mistral v0.1)
//   Metaspace { replacement: "▁", prepend_scheme | add_prefix_space }   (newer exports)
//
// Both drop one leading space of a decoded document: the "▁" the normalizer (or pre-tokenizer)
// prepended to its first word. Byte tokens are bytes only where the decoder has a ByteFallback step
// (as in Hugging Face; without one they decode as the text "<0x0A>").

export interface PieceRules {
  /** The character that stands for a space inside pieces (nearly always "▁"). */
  space: string
  /** Decoding a document drops the space its first text starts with. */
  stripsLeadingSpace: boolean
  /** "<0xNN>" pieces stand for the byte NN. */
  byteFallback: boolean
}

interface DecoderJson {
  type?: string
  decoders?: DecoderJson[]
  pattern?: { String?: string }
  content?: string
  start?: number
  stop?: number
  replacement?: string
  prepend_scheme?: string
  add_prefix_space?: boolean
}

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/

/** The decoding rules of a SentencePiece-style decoder, or null if it is not one we know. */
export function pieceRules (decoder: DecoderJson | null | undefined): PieceRules | null {
  if (decoder == null) return null
  const steps = decoder.type === 'Sequence' ? decoder.decoders ?? [] : [decoder]
  let space: string | null = null
  let strips = false
  let byteFallback = false
  for (const step of steps) {
    switch (step.type) {
      case 'Replace':
        if (step.content !== ' ' || step.pattern?.String === undefined || [...step.pattern.String].length !== 1) return null
        space = step.pattern.String
        break
      case 'Metaspace':
        if (step.replacement === undefined || [...step.replacement].length !== 1) return null
        space = step.replacement
        strips ||= step.prepend_scheme !== undefined ? step.prepend_scheme !== 'never' : step.add_prefix_space !== false
        break
      case 'Strip':
        if (step.content !== ' ' || (step.stop ?? 0) !== 0) return null
        strips ||= (step.start ?? 0) >= 1
        break
      case 'ByteFallback':
        byteFallback = true
        break
      case 'Fuse':
        break
      default:
        return null
    }
  }
  return space === null ? null : { space, stripsLeadingSpace: strips, byteFallback }
}

const utf8 = new TextEncoder()

/** The text a piece stands for (its bytes for a byte-fallback token), as UTF-8. */
export function pieceBytes (piece: string, rules: PieceRules): Uint8Array {
  const byte = rules.byteFallback ? BYTE_TOKEN.exec(piece) : null
  if (byte !== null) return Uint8Array.of(parseInt(byte[1], 16))
  return utf8.encode(piece.replaceAll(rules.space, ' '))
}
