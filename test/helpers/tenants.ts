// Keys and clients for the tenant tests: requests and WebSocket connections as a given key.
import WebSocket, { type ClientOptions } from 'ws'

export const KEY_A = 'tenant-a-0123456789abcdef'
export const KEY_B = 'tenant-b-0123456789abcdef'
export const ADMIN_KEY = 'operator-0123456789abcdef'
/** T2R_API_KEYS for two users and an admin. */
export const KEYS_ENV = `${KEY_A},${KEY_B},admin:${ADMIN_KEY}`

type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any -- response bodies vary by route

/** A request as `key` (null: no key). A body that is a Buffer goes as application/octet-stream. */
export async function as (key: string | null, method: string, url: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = key === null ? {} : { authorization: `Bearer ${key}` }
  let payload: BodyInit | undefined
  if (Buffer.isBuffer(body)) {
    headers['content-type'] = 'application/octet-stream'
    payload = new Uint8Array(body)
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json'
    payload = JSON.stringify(body)
  }
  return await fetch(url, { method, headers, body: payload })
}

export async function json (res: Response | Promise<Response>): Promise<Json> { return await (await res).json() }

export interface WsOutcome {
  /** 101 when the socket opened, else the status the upgrade was refused with. */
  status: number
  ws: WebSocket | null
  body: Json
}

/** Opens a WebSocket, or reports the HTTP status (and error body) that refused the upgrade. */
export async function wsConnect (url: string, options: ClientOptions = {}): Promise<WsOutcome> {
  const ws = new WebSocket(url, options)
  return await new Promise((resolve, reject) => {
    ws.once('open', () => { resolve({ status: 101, ws, body: null }) })
    ws.once('unexpected-response', (req, res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => {
        req.destroy()
        let body: Json = text
        try { body = JSON.parse(text) } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, ws: null, body })
      })
    })
    ws.on('error', reject) // on, not once: a refused upgrade may still report an error after it resolved
  })
}

/** Sends one generate message and resolves with the socket's answer to it (end or error). */
export async function wsGenerate (ws: WebSocket, message: Record<string, unknown>): Promise<Json> {
  return await new Promise((resolve) => {
    const onMessage = (data: WebSocket.RawData): void => {
      const event = JSON.parse(String(data))
      if (event.id === message.id && (event.type === 'end' || event.type === 'error')) {
        ws.off('message', onMessage)
        resolve(event)
      }
    }
    ws.on('message', onMessage)
    ws.send(JSON.stringify({ type: 'generate', ...message }))
  })
}
