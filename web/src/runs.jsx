// Runs now (live, from the SSE feed) with the recently finished ones, and one run's whole record.
import { useCallback, useEffect, useState } from 'preact/hooks'
import { get } from './api.js'
import { t } from './i18n.js'
import { abs, secs, since, span } from './time.js'
import { Kv, ProgressBar, Status, act, usePoll, useTick } from './ui.jsx'

function runActions(run, admin, done) {
  if (!admin) return null
  const path = `/executions/${encodeURIComponent(run.id)}`
  if (run.status === 'running') {
    return (
      <span class="actions">
        <button type="button" data-action="cancel"
                onClick={() => act({ label: `${t('cancel')} ${run.id}`, method: 'POST', path: `${path}/cancel`,
                                     confirm: t('confirmCancel', { id: run.id }), done })}>{t('cancel')}</button>
        <button type="button" data-action="mark-failed"
                onClick={() => act({ label: `${t('markFailed')} ${run.id}`, method: 'POST', path: `${path}/mark-failed`,
                                     prompt: { text: t('askReason', { id: run.id }), param: 'reason', default: '' }, done })}>{t('markFailed')}</button>
      </span>
    )
  }
  return (
    <span class="actions">
      <button type="button" data-action="delete"
              onClick={() => act({ label: `${t('delete')} ${run.id}`, method: 'DELETE', path,
                                   confirm: t('confirmDelete', { id: run.id }), done })}>{t('delete')}</button>
    </span>
  )
}

export function RunsNow({ feed, admin }) {
  const now = useTick(1000)
  const [recent, setRecent] = useState([])
  const load = useCallback(async () => {
    const res = await get('/dashboard/runs', { limit: 30 })
    if (res.ok) setRecent(res.data)
  }, [])
  usePoll(load, 15000, [load])
  const running = Object.values(feed.running).sort((a, b) => String(b.started_at).localeCompare(String(a.started_at)))
  const endedIds = new Set(feed.ended.map((r) => r.id))
  const finished = [...feed.ended, ...recent.filter((r) => !endedIds.has(r.id) && !feed.running[r.id])].slice(0, 50)
  return (
    <section>
      <h1>{t('runsNow')} <span class={`badge ${feed.live ? 's-success' : 's-skipped'}`} data-testid="live" data-mode={feed.mode}>{feed.live ? t('live') : feed.mode === 'polling' ? t('polling') : t('reconnecting')}</span></h1>
      {!running.length && <p class="muted" data-testid="no-running">{t('noRunning')}</p>}
      <div class="cards" data-testid="running">
        {running.map((r) => {
          const hb = since(r.heartbeat_at, now)
          return (
            <article key={r.id} class="card" data-run={r.id} data-status={r.status}>
              <header>
                <a href={`#/runs/${encodeURIComponent(r.id)}`}><strong>{r.job_id}</strong></a>
                <span class="muted small"> {r.namespace} · {r.id.split('.').pop()}</span>
                {r.cancel_requested && <span class="badge s-cancelled">{t('cancel')}…</span>}
              </header>
              <ProgressBar value={r.progress} label={`${t('progress')} ${r.job_id}`} />
              <Kv rows={[
                [t('processed'), <span data-testid="processed">{r.processed_items ?? 0} / {r.total_items ?? '?'}</span>],
                [t('currentItem'), r.current_item === null || r.current_item === undefined ? null : String(r.current_item)],
                [t('message'), r.progress_message],
                [t('source'), r.source_used],
                [t('elapsed'), span(since(r.started_at, now))],
                [t('heartbeat'), hb === null ? null : <span class={hb > 30 ? 'error' : ''}>{t('ago', { d: span(hb) })}</span>],
                [t('trigger_kind'), `${r.is_manual ? t('manual') : t('scheduled')}${r.force ? ` · ${t('forced')}` : ''}`],
              ]} />
              {runActions(r, admin)}
            </article>
          )
        })}
      </div>
      <h2>{t('finished')}</h2>
      <table data-testid="finished">
        <thead><tr><th>{t('job')}</th><th>{t('run')}</th><th>{t('status')}</th><th>{t('reason')}</th><th>{t('finishedAt')}</th><th>{t('duration')}</th><th>{t('message')}</th></tr></thead>
        <tbody>
          {finished.map((r) => (
            <tr key={r.id} data-run={r.id} data-status={r.status}>
              <td>{r.job_id} <span class="muted small">{r.namespace}</span></td>
              <td><a href={`#/runs/${encodeURIComponent(r.id)}`}>{r.id.split('.').pop()}</a></td>
              <td><Status value={r.status} /></td><td>{r.reason}</td>
              <td>{abs(r.finished_at || r.timestamp)}</td><td>{secs(r.execution_time)}</td>
              <td class="small">{r.error_message || r.progress_message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  )
}

// what a task reports beyond the counts (the daily task: symbols already up to date, end date, last trading day;
// a task that checks coverage: its gaps), shown as it was written
const COUNT_KEYS = new Set(['inserted', 'updated', 'unchanged', 'errors', 'rows', 'by_source', 'total_items',
  'processed_items', 'failed_items', 'item_errors', 'attempts_not_recorded'])
function taskReport(rv) {
  if (!rv || typeof rv !== 'object') return null
  const keys = Object.keys(rv).filter((k) => !COUNT_KEYS.has(k))
  return keys.length ? Object.fromEntries(keys.map((k) => [k, rv[k]])) : null
}

export function Run({ id, admin, feed }) {
  const [run, setRun] = useState(null)
  const [error, setError] = useState(null)
  const load = useCallback(async () => {
    const res = await get(`/dashboard/runs/${encodeURIComponent(id)}`)
    if (res.ok) { setRun(res.data); setError(null) } else setError(res.message)
  }, [id])
  usePoll(load, run?.status === 'running' ? 2000 : 15000, [load, run?.status])
  // a live row overrides the fetched one (as Prefect lets the event's state win over REST)
  const live = feed.running[id]
  useEffect(() => { if (!live && run?.status === 'running') load() }, [Boolean(live)])
  if (error) return <p class="error" role="alert">{error}</p>
  if (!run) return <p>{t('loading')}</p>
  const r = live ? { ...run, ...live } : run
  const rv = r.return_value || {}
  const report = taskReport(rv)
  const gaps = report && Object.keys(report).some((k) => /gap|missing/i.test(k))
  return (
    <section data-testid="run" data-status={r.status}>
      <p><a href={`#/jobs/${r.namespace}/${r.job_id}`}>← {r.job_id}</a></p>
      <h1>{t('run')} <code>{r.id}</code> <Status value={r.status} /></h1>
      {r.status === 'running' && <ProgressBar value={r.progress} label={t('progress')} />}
      {runActions(r, admin, load)}
      <div class="grid">
        <Kv rows={[
          [t('status'), r.status], [t('reason'), r.reason],
          [t('trigger_kind'), `${r.trigger || (r.is_manual ? 'manual' : 'schedule')}${r.force ? ` · ${t('forced')}` : ''}`],
          [t('askedBy'), r.requested_by || (r.is_manual ? null : t('scheduled'))],
          r.cancel_requested_by && [`${t('cancel')} · ${t('who')}`, r.cancel_requested_by],
          r.marked_failed_by && [`${t('markFailed')} · ${t('who')}`, r.marked_failed_by],
          [t('started'), abs(r.started_at)], [t('finishedAt'), abs(r.finished_at)], [t('duration'), secs(r.execution_time)],
          [t('source'), r.source_used], [t('processed'), `${r.processed_items ?? 0} / ${r.total_items ?? '?'}`],
          [t('message'), r.progress_message],
        ]} />
        <div>
          <h2>{t('counts')}</h2>
          <Kv rows={[[t('inserted'), rv.inserted], [t('updated'), rv.updated], [t('unchanged'), rv.unchanged],
                     [t('failedItems'), rv.failed_items ?? rv.errors]]} />
          {report && <><h2>{gaps ? t('gapReport') : t('taskReport')}</h2>
            <pre class="small wrap" data-testid="task-report">{JSON.stringify(report, null, 2)}</pre></>}
        </div>
      </div>
      {r.error_message && <><h2>{t('error')}</h2><p class="error verbatim">{r.error_message}</p></>}
      {r.traceback && <><h2>{t('traceback')}</h2><pre class="traceback">{r.traceback}</pre></>}
      <h2>{t('attempts')}</h2>
      <table data-testid="attempts">
        <thead><tr><th>#</th><th>{t('pod')}</th><th>{t('outcome')}</th><th>{t('started')}</th><th>{t('sources')}</th><th>{t('error')}</th></tr></thead>
        <tbody>
          {(r.attempts || []).map((a, i) => (
            <tr key={i}>
              <td>{a.number ?? i + 1}</td><td class="small">{a.pod}</td><td><Status value={a.outcome || 'running'} /> {a.reason}</td>
              <td>{abs(a.started_at)}</td>
              <td class="small">
                <ol>
                  {(a.source_attempts || r.source_attempts || []).map((s, j) => (
                    <li key={j}>{s.source}{s.batch !== undefined ? ` [${s.batch}]` : ''}{' '}
                      {s.error_class ? <span class="error">✗ {s.error_class}: {s.message}</span> : `✓ ${s.rows ?? ''}`}</li>
                  ))}
                </ol>
              </td>
              <td class="small verbatim">{a.error_message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  )
}
