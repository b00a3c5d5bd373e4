// A path a client names under a folder of the server's (corpora/, the imports folder), resolved
// without trusting what lies there: relative, no "..", and its real path (symlinks resolved)
// inside the folder's real path. Every refusal is a 422 naming the request field.
import { realpath } from 'node:fs/promises'
import { isAbsolute, normalize, resolve, sep } from 'node:path'
import { unprocessable } from '../errors.ts'

/** `where` words the folder in messages ("the data folder's corpora/"). */
export async function containedPath (baseDir: string, relative: string, param: string, where: string): Promise<string> {
  if (isAbsolute(relative) || normalize(relative).split(sep).includes('..')) {
    throw unprocessable(`${param} must be relative to ${where} and must not contain ".."`, param)
  }
  const realPathOf = async (path: string): Promise<string> => {
    try {
      return await realpath(path)
    } catch {
      throw unprocessable(`${param} ${relative} not found under ${where}`, param)
    }
  }
  const base = await realPathOf(baseDir)
  const real = await realPathOf(resolve(base, relative))
  if (!real.startsWith(base + sep)) throw unprocessable(`${param} ${relative} leads outside ${where}`, param)
  return real
}
