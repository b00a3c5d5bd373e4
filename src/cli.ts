// The `t2r` command (package.json "bin"): `t2r worker [flags]` starts a conversion worker.
import { runWorker } from './worker-main.ts'

const [command, ...rest] = process.argv.slice(2)
if (command === 'worker') {
  await runWorker(rest)
} else {
  process.stderr.write(`t2r: unknown command ${JSON.stringify(command ?? '')}: usage: t2r worker [--redis-url URL] [--models-dir DIR] [--conversions-dir DIR] [--metrics-port N]\n`)
  process.exit(2)
}
