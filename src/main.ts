// `npm start`: serve the models folder. Flags and environment variables: see src/config.ts.
import { loadConfig, type Config } from './config.ts'
import { buildServer } from './server.ts'

let config: Config
try {
  config = loadConfig(process.argv.slice(2))
} catch (err) {
  // A configuration mistake is one line on stderr, not a stack trace.
  process.stderr.write(`t2r-serve: ${(err as Error).message}\n`)
  process.exit(2)
}
const server = await buildServer(config)
await server.app.listen({ host: config.host, port: config.port })
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.app.log.info({ signal }, 'shutting down')
    server.close().then(() => process.exit(0), (err) => { server.app.log.error(err); process.exit(1) })
  })
}
await server.loadModels()
server.app.log.info({ models: server.services.registry.list().map((m) => m.name) }, 'ready')
