// The live run feed: a ticket from POST /stream/ticket (EventSource cannot send the bearer token), then
// GET /stream/runs?ticket= as Server-Sent Events. `snapshot` replaces the running set, `run` updates one row,
// `end` moves a row to the finished list. On error or expiry it reconnects with a new ticket after 2 s.
// When the stream cannot get through (3 attempts in a row end before a snapshot: a proxy that blocks or buffers
// event streams), it falls back to polling GET /dashboard/running every 2 s (`mode: 'polling'`) and tries the
// stream again once a minute; a run that leaves the running set is looked up among the finished ones.
import { useEffect, useState } from 'preact/hooks'
import { call } from './api.js'

const POLL_MS = 2000
const FAILURES_BEFORE_POLLING = 3
const STREAM_RETRY_MS = 60000

export function useRunFeed(enabled) {
  const [state, setState] = useState({ running: {}, ended: [], live: false, mode: 'connecting', at: 0 })
  useEffect(() => {
    if (!enabled) return undefined
    let source = null
    let timer = null
    let pollTimer = null
    let closed = false
    let failures = 0
    let polling = false
    let running = {} // this feed's own copy of the running set, to tell which runs left it between two polls

    const publish = (patch) => setState((s) => ({ ...s, ...patch, running: { ...running }, at: Date.now() }))
    const end = (runs) => {
      const ids = new Set(runs.map((r) => r.id))
      for (const id of ids) delete running[id]
      setState((s) => ({ ...s, at: Date.now(), running: { ...running },
        ended: [...runs, ...s.ended.filter((r) => !ids.has(r.id))].slice(0, 50) }))
    }

    const poll = async () => {
      if (closed || !polling) return
      const res = await call('GET', '/dashboard/running')
      if (closed || !polling) return
      if (res.ok) {
        const now = Object.fromEntries(res.data.map((r) => [r.id, r]))
        const gone = Object.values(running).filter((r) => !now[r.id])
        running = now
        publish({ live: false, mode: 'polling' })
        if (gone.length) {
          const recent = await call('GET', '/dashboard/runs', { query: { limit: 100 } })
          const byId = Object.fromEntries((recent.ok ? recent.data : []).map((r) => [r.id, r]))
          if (!closed) end(gone.map((r) => byId[r.id] || { ...r, status: 'finished' }))
        }
      }
      if (!closed && polling) pollTimer = setTimeout(poll, POLL_MS)
    }

    const reconnect = (ms = 2000) => {
      if (source) source.close()
      source = null
      if (closed) return
      failures += 1
      clearTimeout(timer)
      if (!polling && failures >= FAILURES_BEFORE_POLLING) {
        polling = true
        poll()
      }
      if (polling) {
        setState((s) => ({ ...s, live: false, mode: 'polling' }))
        timer = setTimeout(open, STREAM_RETRY_MS) // the stream may get through later
        return
      }
      setState((s) => ({ ...s, live: false, mode: 'connecting' }))
      timer = setTimeout(open, ms)
    }

    const open = async () => {
      const res = await call('POST', '/stream/ticket')
      if (closed) return
      if (!res.ok) { reconnect(); return }
      source = new EventSource(`/api/scheduler/stream/runs?ticket=${encodeURIComponent(res.data.ticket)}`)
      source.addEventListener('snapshot', (e) => {
        const { runs } = JSON.parse(e.data)
        failures = 0
        polling = false
        clearTimeout(pollTimer)
        running = Object.fromEntries(runs.map((r) => [r.id, r]))
        publish({ live: true, mode: 'live' })
      })
      source.addEventListener('run', (e) => {
        const { run } = JSON.parse(e.data)
        running[run.id] = run
        publish({})
      })
      source.addEventListener('end', (e) => end([JSON.parse(e.data).run]))
      source.addEventListener('expired', () => { failures = 0; reconnect(0) })
      source.onerror = () => reconnect()
    }
    open()
    return () => { closed = true; clearTimeout(timer); clearTimeout(pollTimer); if (source) source.close() }
  }, [enabled])
  return state
}
