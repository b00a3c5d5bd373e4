// Reads what a Dockerfile's final stage runs: ENTRYPOINT and CMD, which must be in exec form (a
// JSON array). Shell form would put /bin/sh between the container's PID 1 and the server, and sh
// does not pass SIGTERM on.
import { readFileSync } from 'node:fs'

export interface ImageCommand {
  entrypoint: string[]
  cmd: string[]
  workdir: string
  /** ENTRYPOINT followed by CMD: the process the container starts. */
  argv: string[]
}

/** The instructions of the final stage, continuation lines joined, comments dropped. */
function finalStage (path: string): Array<{ keyword: string, args: string }> {
  const lines = readFileSync(path, 'utf8').replace(/\\\n/g, ' ').split('\n')
  const instructions = lines
    .filter((line) => /^[A-Za-z]+\s/.test(line))
    .map((line) => {
      const [, keyword, args] = /^([A-Za-z]+)\s+(.*)$/.exec(line) as RegExpExecArray
      return { keyword: keyword.toUpperCase(), args: args.trim() }
    })
  const from = instructions.map((i) => i.keyword).lastIndexOf('FROM')
  if (from < 0) throw new Error(`${path}: no FROM`)
  return instructions.slice(from)
}

function execForm (path: string, keyword: string, args: string): string[] {
  let parsed: unknown
  try { parsed = JSON.parse(args) } catch { parsed = null }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((a) => typeof a === 'string')) {
    throw new Error(`${path}: ${keyword} must be in exec form (a JSON array of strings), got ${args}`)
  }
  return parsed
}

export function imageCommand (path: string): ImageCommand {
  const stage = finalStage(path)
  const last = (keyword: string): string | undefined => stage.filter((i) => i.keyword === keyword).pop()?.args
  const entrypointArgs = last('ENTRYPOINT')
  const cmdArgs = last('CMD')
  if (cmdArgs === undefined) throw new Error(`${path}: the final stage has no CMD`)
  const entrypoint = entrypointArgs === undefined ? [] : execForm(path, 'ENTRYPOINT', entrypointArgs)
  const cmd = execForm(path, 'CMD', cmdArgs)
  return { entrypoint, cmd, workdir: last('WORKDIR') ?? '/', argv: [...entrypoint, ...cmd] }
}
