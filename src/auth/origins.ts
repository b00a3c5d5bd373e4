// Origin allow-lists (CORS, WebSocket). Entries are exact origins (`https://app.example.com`,
// `http://localhost:5173`) or `*` for any.
export function parseOrigins (what: string, value: string | undefined): string[] {
  const origins = (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  for (const o of origins) {
    if (o === '*') continue
    let url: URL
    try {
      url = new URL(o)
    } catch {
      throw new Error(`${what}: ${JSON.stringify(o)} is not an origin like https://app.example.com`)
    }
    if (url.origin !== o.replace(/\/$/, '').toLowerCase() || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new Error(`${what}: ${JSON.stringify(o)} is not an origin like https://app.example.com (scheme, host and port only)`)
    }
  }
  return origins.map((o) => (o === '*' ? o : new URL(o).origin))
}

/** A request without an Origin header is not from a browser page, and is allowed. */
export function originAllowed (allowed: readonly string[], origin: string | undefined): boolean {
  if (origin === undefined) return true
  return allowed.includes('*') || allowed.includes(origin.toLowerCase())
}
