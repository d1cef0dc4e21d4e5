// The live run feed: a ticket from POST /stream/ticket (EventSource cannot send the bearer token), then
// GET /stream/runs?ticket= as Server-Sent Events. `snapshot` replaces the running set, `run` updates one row,
// `end` moves a row to the finished list. On error or expiry it reconnects with a new ticket after 2 s.
// When the stream cannot get through (3 connections in a row, each opened with a valid ticket, end or stay silent
// for 10 s before their snapshot: a proxy that blocks or buffers event streams), it falls back to polling
// GET /dashboard/running every 2 s (`mode: 'polling'`) and tries the stream again once a minute; a run that
// leaves the running set gets its verdict from GET /dashboard/runs/{id}. An API that does not answer at all is
// not a blocked stream: the ticket request fails, and the feed keeps retrying the stream, backing off to 30 s.
import { useEffect, useState } from 'preact/hooks'
import { call } from './api.js'

const POLL_MS = 2000
const FAILURES_BEFORE_POLLING = 3
const SNAPSHOT_WAIT_MS = 10000
const STREAM_RETRY_MS = 60000

export function useRunFeed(enabled) {
  const [state, setState] = useState({ running: {}, ended: [], live: false, mode: 'connecting', at: 0 })
  useEffect(() => {
    if (!enabled) return undefined
    let source = null
    let timer = null // the next attempt to open the stream
    let silence = null // a stream that sends no snapshot in time counts as failed
    let pollTimer = null
    let closed = false
    let failures = 0 // connections in a row that were opened with a ticket and gave no snapshot
    let ticketFailures = 0
    let pollLoop = 0 // the current polling loop; 0: not polling
    let running = {} // this feed's own copy of the running set, to tell which runs left it between two polls

    const publish = (patch) => setState((s) => ({ ...s, ...patch, running: { ...running }, at: Date.now() }))
    const end = (runs) => {
      const ids = new Set(runs.map((r) => r.id))
      for (const id of ids) delete running[id]
      setState((s) => ({ ...s, at: Date.now(), running: { ...running },
        ended: [...runs, ...s.ended.filter((r) => !ids.has(r.id))].slice(0, 50) }))
    }
    const verdict = async (run) => {
      const res = await call('GET', `/dashboard/runs/${encodeURIComponent(run.id)}`)
      if (res.ok) return res.data
      return res.status === 404 ? { ...run, status: 'deleted' } : null // unknown yet: looked up again next poll
    }

    const poll = async (loop) => {
      if (closed || loop !== pollLoop) return
      const res = await call('GET', '/dashboard/running')
      if (closed || loop !== pollLoop) return
      if (res.ok) {
        const now = Object.fromEntries(res.data.map((r) => [r.id, r]))
        const gone = Object.values(running).filter((r) => !now[r.id])
        const finals = (await Promise.all(gone.map(verdict)))
        if (closed || loop !== pollLoop) return
        const unknown = gone.filter((_, i) => !finals[i]) // keep them until their verdict can be read
        running = { ...Object.fromEntries(unknown.map((r) => [r.id, r])), ...now }
        publish({ live: false, mode: 'polling' })
        const known = finals.filter(Boolean)
        if (known.length) end(known)
      }
      pollTimer = setTimeout(() => poll(loop), POLL_MS)
    }
    const stopPolling = () => { pollLoop = 0; clearTimeout(pollTimer) }

    const retry = (ms) => { clearTimeout(timer); if (!closed) timer = setTimeout(open, ms) }
    const failed = () => { // a stream opened with a ticket ended, or stayed silent, before its snapshot
      clearTimeout(silence)
      if (source) source.close()
      source = null
      if (closed) return
      failures += 1
      if (!pollLoop && failures >= FAILURES_BEFORE_POLLING) {
        pollLoop = Date.now()
        poll(pollLoop)
      }
      if (pollLoop) {
        setState((s) => ({ ...s, live: false, mode: 'polling' }))
        retry(STREAM_RETRY_MS) // the stream may get through later
      } else {
        setState((s) => ({ ...s, live: false, mode: 'connecting' }))
        retry(2000)
      }
    }

    const open = async () => {
      const res = await call('POST', '/stream/ticket')
      if (closed) return
      if (!res.ok) { // the API itself does not answer: not a blocked stream
        ticketFailures += 1
        if (!pollLoop) setState((s) => ({ ...s, live: false, mode: 'connecting' }))
        retry(Math.min(30000, 2000 * ticketFailures))
        return
      }
      ticketFailures = 0
      let snapshotSeen = false
      const stream = new EventSource(`/api/scheduler/stream/runs?ticket=${encodeURIComponent(res.data.ticket)}`)
      source = stream
      clearTimeout(silence)
      silence = setTimeout(() => { if (source === stream && !snapshotSeen) failed() }, SNAPSHOT_WAIT_MS)
      stream.addEventListener('snapshot', (e) => {
        const { runs } = JSON.parse(e.data)
        snapshotSeen = true
        clearTimeout(silence)
        failures = 0
        stopPolling()
        running = Object.fromEntries(runs.map((r) => [r.id, r]))
        publish({ live: true, mode: 'live' })
      })
      stream.addEventListener('run', (e) => {
        const { run } = JSON.parse(e.data)
        running[run.id] = run
        publish({})
      })
      stream.addEventListener('end', (e) => end([JSON.parse(e.data).run]))
      stream.addEventListener('expired', () => { stream.close(); if (source === stream) source = null; retry(0) })
      stream.onerror = () => {
        if (source !== stream) return
        if (snapshotSeen) { // a live stream that broke: reconnect as before, it is not a blocked stream
          stream.close()
          source = null
          setState((s) => ({ ...s, live: false, mode: 'connecting' }))
          retry(2000)
        } else {
          failed()
        }
      }
    }
    open()
    return () => {
      closed = true
      clearTimeout(timer); clearTimeout(silence); stopPolling()
      if (source) source.close()
    }
  }, [enabled])
  return state
}
