// The live run feed: a ticket from POST /stream/ticket (EventSource cannot send the bearer token), then
// GET /stream/runs?ticket= as Server-Sent Events. `snapshot` replaces the running set, `run` updates one row,
// `end` moves a row to the finished list. On error or expiry it reconnects with a new ticket after 2 s.
import { useEffect, useState } from 'preact/hooks'
import { call } from './api.js'

export function useRunFeed(enabled) {
  const [state, setState] = useState({ running: {}, ended: [], live: false, at: 0 })
  useEffect(() => {
    if (!enabled) return undefined
    let source = null
    let timer = null
    let closed = false
    const reconnect = (ms = 2000) => {
      if (source) source.close()
      source = null
      setState((s) => ({ ...s, live: false }))
      if (!closed) timer = setTimeout(open, ms)
    }
    const open = async () => {
      const res = await call('POST', '/stream/ticket')
      if (closed) return
      if (!res.ok) { reconnect(); return }
      source = new EventSource(`/api/scheduler/stream/runs?ticket=${encodeURIComponent(res.data.ticket)}`)
      source.addEventListener('snapshot', (e) => {
        const { runs } = JSON.parse(e.data)
        setState((s) => ({ ...s, live: true, at: Date.now(), running: Object.fromEntries(runs.map((r) => [r.id, r])) }))
      })
      source.addEventListener('run', (e) => {
        const { run } = JSON.parse(e.data)
        setState((s) => ({ ...s, at: Date.now(), running: { ...s.running, [run.id]: run } }))
      })
      source.addEventListener('end', (e) => {
        const { run } = JSON.parse(e.data)
        setState((s) => {
          const running = { ...s.running }
          delete running[run.id]
          return { ...s, at: Date.now(), running, ended: [run, ...s.ended.filter((r) => r.id !== run.id)].slice(0, 50) }
        })
      })
      source.addEventListener('expired', () => reconnect(0))
      source.onerror = () => reconnect()
    }
    open()
    return () => { closed = true; clearTimeout(timer); if (source) source.close() }
  }, [enabled])
  return state
}
