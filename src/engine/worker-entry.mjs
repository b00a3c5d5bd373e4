// Worker threads do not inherit the parent's TypeScript loader. Next to the compiled build
// (dist/engine/worker.js) load the JavaScript directly: production images have no tsx, a dev
// dependency. Next to the sources (src/, run through tsx) register tsx, then load worker.ts.
import { existsSync } from 'node:fs'

const compiled = new URL('./worker.js', import.meta.url)
if (existsSync(compiled)) {
  await import(compiled.href)
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import('./worker.ts')
}
