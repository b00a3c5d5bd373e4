// Reads a `{type: file}` corpus from the data folder's corpora/ without trusting what is there:
// the real path (symlinks resolved) must stay inside corpora/, only regular files are read, the
// size is checked before reading, and nothing blocks the event loop (a FIFO with no writer would
// block a synchronous read forever). Every refusal is a 422 naming corpus.path.
import { constants } from 'node:fs'
import { open } from 'node:fs/promises'
import { unprocessable, type InvalidError } from '../errors.ts'
import { containedPath } from './contained-path.ts'

const PARAM = 'corpus.path'

function refuse (message: string): InvalidError {
  return unprocessable(message, PARAM)
}

export async function readCorpusFile (corporaDir: string, relative: string, maxBytes: number): Promise<string> {
  const real = await containedPath(corporaDir, relative, PARAM, 'the data folder\'s corpora/')
  let handle
  try {
    // O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer (fstat refuses it
    // below); O_NOFOLLOW: a symlink swapped in after realpath is refused, not followed.
    handle = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW)
  } catch (err) {
    throw refuse(`corpus.path ${relative} cannot be opened: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  try {
    const stat = await handle.stat()
    if (!stat.isFile()) throw refuse(`corpus.path ${relative} is not a regular file`)
    if (stat.size > maxBytes) throw refuse(`corpus.path ${relative} is ${stat.size} bytes, over the ${maxBytes}-byte limit`)
    const bytes = await handle.readFile()
    if (bytes.length > maxBytes) throw refuse(`corpus.path ${relative} grew to ${bytes.length} bytes while read, over the ${maxBytes}-byte limit`)
    return bytes.toString('utf8')
  } finally {
    await handle.close()
  }
}
