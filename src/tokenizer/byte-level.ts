// Byte-level BPE (GPT-2, Llama 3, Qwen2): every byte maps to one printable symbol, so a token's
// bytes are its vocabulary string read back through that table.

/** GPT-2's byte-to-symbol table: printable bytes map to themselves, the rest to U+0100 onward. */
function byteLevelSymbols (): Map<string, number> {
  const printable: number[] = []
  for (let b = 33; b <= 126; b++) printable.push(b)
  for (let b = 161; b <= 172; b++) printable.push(b)
  for (let b = 174; b <= 255; b++) printable.push(b)
  const table = new Map<string, number>()
  let extra = 0
  for (let b = 0; b < 256; b++) {
    const code = printable.includes(b) ? b : 256 + extra++
    table.set(String.fromCodePoint(code), b)
  }
  return table
}

const SYMBOLS = byteLevelSymbols()

/** The bytes a byte-level vocabulary string stands for; throws if it is not byte-level. */
export function byteLevelBytes (token: string, where: string): Uint8Array {
  return Uint8Array.from([...token].map((ch) => {
    const b = SYMBOLS.get(ch)
    if (b === undefined) throw new Error(`${where}: token ${JSON.stringify(token)} is not byte-level`)
    return b
  }))
}
