// The job table (filtered and paged by the API) and one job's page.
import cronstrue from 'cronstrue'
import 'cronstrue/locales/zh_CN'
import { useCallback, useEffect, useState } from 'preact/hooks'
import { get, getOnce } from './api.js'
import { getLang, t } from './i18n.js'
import { abs, rel, secs } from './time.js'
import { Kv, Status, Strip, act, usePoll, useTick } from './ui.jsx'

const PAGE = 50

export function words(cron) {
  try {
    return cronstrue.toString(cron, { locale: getLang() === 'zh' ? 'zh_CN' : 'en', use24HourTimeFormat: true })
  } catch {
    return cron
  }
}

const jobPath = (j) => `/jobs/${encodeURIComponent(j.id)}`  // id: the SyncJob's name; name: the human one
const nsQuery = (j) => ({ namespace: j.namespace })

export function JobActions({ job, admin, reload }) {
  if (!admin) return null
  const label = (what) => `${t(what)} ${job.name}`
  return (
    <span class="actions">
      <button type="button" data-action="trigger"
              onClick={() => act({ label: label('trigger'), method: 'POST', path: `${jobPath(job)}/trigger`, query: nsQuery(job), done: reload })}>
        {t('trigger')}
      </button>
      <button type="button" data-action="force"
              onClick={() => act({ label: label('force'), method: 'POST', path: `${jobPath(job)}/trigger`,
                                   query: { ...nsQuery(job), force: true }, confirm: t('confirmForce', { name: job.name }), done: reload })}>
        {t('force')}
      </button>
      {job.paused
        ? <button type="button" data-action="resume"
                  onClick={() => act({ label: label('resume'), method: 'POST', path: `${jobPath(job)}/resume`, query: nsQuery(job), done: reload })}>
            {t('resume')}
          </button>
        : <button type="button" data-action="pause"
                  onClick={() => act({ label: label('pause'), method: 'POST', path: `${jobPath(job)}/pause`, query: nsQuery(job), done: reload })}>
            {t('pause')}
          </button>}
    </span>
  )
}

// the operator's status.lastExecution, else the newest record (runs the operator has not summarised yet)
function LastRun({ job }) {
  const last = job.last_execution || (job.runs?.[0] && { status: job.runs[0].status, started_at: job.runs[0].timestamp })
  return (
    <>
      <Status value={last?.status} />
      {last && <div class="muted small">{abs(last.started_at)}</div>}
    </>
  )
}

function Select({ label, value, options, onChange, name }) {
  return (
    <label>
      {label}
      <select name={name} value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">{t('all')}</option>
        {options.map((o) => <option key={o} value={o}>{o}</option>)}
      </select>
    </label>
  )
}

export const NO_FILTERS = { namespace: '', task: '', source: '', status: '', q: '' }
export const FIRST_PAGE = { ...NO_FILTERS, limit: PAGE, offset: 0 }

export function Jobs({ admin }) {
  const [filters, setFilters] = useState(NO_FILTERS)
  const [offset, setOffset] = useState(0)
  const [page, setPage] = useState(null)
  const [error, setError] = useState(null)
  const now = useTick(1000)
  const load = useCallback(async () => {
    const res = await getOnce('/dashboard/jobs', { ...filters, limit: PAGE, offset })
    if (res.ok) { setPage(res.data); setError(null) } else setError(res.message)
  }, [filters, offset])
  usePoll(load, 10000, [load])
  const set = (key) => (value) => { setOffset(0); setFilters((f) => ({ ...f, [key]: value })) }
  const facets = page?.facets || { namespaces: [], tasks: [], sources: [] }
  return (
    <section>
      <h1>{t('jobs')}</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()} role="search">
        <Select name="namespace" label={t('namespace')} value={filters.namespace} options={facets.namespaces} onChange={set('namespace')} />
        <Select name="task" label={t('task')} value={filters.task} options={facets.tasks} onChange={set('task')} />
        <Select name="source" label={t('source')} value={filters.source} options={facets.sources} onChange={set('source')} />
        <Select name="status" label={t('status')} value={filters.status}
                options={['success', 'failed', 'cancelled', 'skipped', 'missed', 'running', 'paused', 'never']} onChange={set('status')} />
        <label>{t('search')}
          <input type="search" name="q" value={filters.q} onInput={(e) => set('q')(e.currentTarget.value)} />
        </label>
      </form>
      {error && <p class="error" role="alert">{error}</p>}
      {!page ? <p>{t('loading')}</p> : (
        <>
          <p class="muted" data-testid="count">{t('shown', { n: page.items.length, total: page.total, all: page.all })}</p>
          <div class="scroll">
            <table class="jobs" data-testid="jobs">
              <thead>
                <tr>
                  <th>{t('name')}</th><th>{t('namespace')}</th><th>{t('task')}</th><th>{t('sources')}</th>
                  <th>{t('schedule')}</th><th>{t('nextRun')}</th><th>{t('paused')}</th><th>{t('lastRun')}</th>
                  <th>{t('successRate7d')}</th><th>{t('median7d')}</th><th>{t('recentRuns')}</th>
                  {admin && <th>{t('actions')}</th>}
                </tr>
              </thead>
              <tbody>
                {page.items.map((j) => (
                  <tr key={`${j.namespace}/${j.id}`} data-job={j.id} data-namespace={j.namespace} data-paused={String(j.paused)}>
                    <td>
                      <a href={`#/jobs/${j.namespace}/${j.id}`} class="jobname">{j.display_name || j.name}</a>
                      {j.display_name && <div class="muted small">{j.id}</div>}
                    </td>
                    <td>{j.namespace}</td>
                    <td>{j.task}</td>
                    <td>{j.sources.map((s, i) => <span key={s} class="chip">{i + 1}. {s}</span>)}</td>
                    <td><div>{words(j.schedule)}</div><code class="small">{j.schedule}</code> <span class="muted small">{j.time_zone}</span></td>
                    <td>{j.next_run_time ? <><div>{abs(j.next_run_time)}</div><div class="muted small">{rel(j.next_run_time, now)}</div></> : t('none')}</td>
                    <td data-testid="paused">{j.paused ? <span class="badge s-paused">{t('paused')}</span> : <span class="muted">{t('active')}</span>}</td>
                    <td>
                      <LastRun job={j} />
                    </td>
                    <td>{j.success_rate_7d === null ? t('none') : `${(j.success_rate_7d * 100).toFixed(0)}%`}</td>
                    <td>{secs(j.median_duration_7d)}</td>
                    <td><Strip runs={j.runs} /></td>
                    {admin && <td><JobActions job={j} admin={admin} reload={load} /></td>}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav class="pager">
            <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>{t('prev')}</button>
            <span>{t('page', { n: Math.floor(offset / PAGE) + 1 })}</span>
            <button type="button" disabled={offset + PAGE >= page.total} onClick={() => setOffset(offset + PAGE)}>{t('next')}</button>
          </nav>
        </>
      )}
    </section>
  )
}

function DurationChart({ rows }) {
  const timed = rows.filter((r) => r.execution_time !== null)
  if (!timed.length) return <p class="muted">{t('none')}</p>
  const max = Math.max(...timed.map((r) => r.execution_time), 1)
  const w = 8
  const height = 120
  const avg = timed.reduce((a, r) => a + r.execution_time, 0) / timed.length
  const slots = Math.max(timed.length, 50) // a few runs make thin bars, not a wall
  return (
    <figure>
      <svg class="chart" viewBox={`0 0 ${slots * (w + 2)} ${height}`} preserveAspectRatio="none" role="img"
           aria-label={t('durationChart')} data-testid="duration-chart">
        {timed.map((r, i) => {
          const h = Math.max(1, (r.execution_time / max) * (height - 4))
          return (
            <rect key={r.id} x={i * (w + 2)} y={height - h} width={w} height={h} class={`s-${r.status}`}>
              <title>{`${abs(r.timestamp)} · ${r.status} · ${secs(r.execution_time)}`}</title>
            </rect>
          )
        })}
        <line x1="0" x2={slots * (w + 2)} y1={height - (avg / max) * (height - 4)} y2={height - (avg / max) * (height - 4)} class="avg" />
      </svg>
      <figcaption class="muted small">max {secs(max)} · avg {secs(avg)} · n={timed.length}</figcaption>
    </figure>
  )
}

export function Job({ namespace, name, admin }) {
  const [job, setJob] = useState(null)
  const [sched, setSched] = useState(null)
  const [runs, setRuns] = useState(null)
  const [runOffset, setRunOffset] = useState(0)
  const [history, setHistory] = useState(null)
  const [error, setError] = useState(null)
  const [editing, setEditing] = useState(false)
  const q = { namespace }
  const base = `/jobs/${encodeURIComponent(name)}`
  const load = useCallback(async () => {
    const [j, s, r, h] = await Promise.all([
      get(base, q), get(`/dashboard${base}/schedule`, q),
      get(`${base}/executions`, { ...q, limit: 20, offset: runOffset }), get(`${base}/history`, { ...q, limit: 50 }),
    ])
    if (!j.ok) { setError(j.message); return }
    setError(null); setJob(j.data)
    if (s.ok) setSched(s.data)
    if (r.ok) setRuns(r.data)
    if (h.ok) setHistory(h.data)
  }, [namespace, name, runOffset])
  usePoll(load, 5000, [load])
  useEffect(() => setEditing(false), [name])
  if (error) return <p class="error" role="alert">{error}</p>
  if (!job) return <p>{t('loading')}</p>
  const st = job.status || {}
  const save = async (e) => {
    e.preventDefault()
    const form = new FormData(e.currentTarget)
    await act({ label: `${t('edit')} ${name}`, method: 'PUT', path: `${base}/metadata`, query: q,
                body: { display_name: form.get('display_name') || null, description: form.get('description') || null },
                done: (res) => { if (res.ok) setEditing(false); load() } })
  }
  return (
    <section data-testid="job" data-paused={String(job.paused)}>
      <p><a href="#/jobs">← {t('back')}</a></p>
      <h1>{job.display_name || job.name} <span class="muted small">{job.namespace}/{job.id}</span></h1>
      {job.description && <p>{job.description}</p>}
      <p>
        {job.paused ? <span class="badge s-paused">{t('paused')}</span> : <span class="badge s-success">{t('active')}</span>}{' '}
        <JobActions job={job} admin={admin} reload={load} />
        {admin && <button type="button" data-action="edit" onClick={() => setEditing(!editing)}>{t('edit')}</button>}
      </p>
      {editing && (
        <form class="edit" onSubmit={save}>
          <label>{t('displayName')} <input name="display_name" defaultValue={job.display_name || ''} maxLength={200} /></label>
          <label>{t('description')} <textarea name="description" defaultValue={job.description || ''} maxLength={2000} /></label>
          <button type="submit">{t('save')}</button>
        </form>
      )}
      <div class="grid">
        <div>
          <h2>{t('spec')}</h2>
          <Kv rows={[
            [t('task'), job.task], [t('sources'), job.sources.join(' → ')],
            [t('schedule'), <>{words(job.schedule)} <code>{job.schedule}</code> ({job.time_zone})</>],
            [t('spec_concurrency'), job.concurrency_policy], [t('spec_tradingHours'), job.trading_hours_only ? t('yes') : t('no')],
            [t('spec_deadline'), job.active_deadline_seconds], [t('spec_backoff'), job.backoff_limit],
            [t('options'), <code class="small wrap">{JSON.stringify(job.options)}</code>],
          ]} />
          <h2>{t('conditions')}</h2>
          <table>
            <thead><tr><th>type</th><th>status</th><th>reason</th><th>{t('message')}</th><th>{t('when')}</th></tr></thead>
            <tbody>
              {(st.conditions || []).map((c) => (
                <tr key={c.type}><td>{c.type}</td><td>{c.status}</td><td>{c.reason}</td><td>{c.message}</td><td>{abs(c.last_transition_time)}</td></tr>
              ))}
            </tbody>
          </table>
          <p class="muted small">generation {st.generation} · observed {st.observed_generation} · CronJob {st.cron_job_name || t('none')}</p>
        </div>
        <div>
          <h2>{t('next10')}</h2>
          <ol class="next" data-testid="next-runs">
            {(sched?.next_runs || []).map((n) => <li key={n}>{abs(n)} <span class="muted small">{rel(n)}</span></li>)}
          </ol>
          {sched && !sched.next_runs.length && <p class="muted">{job.paused ? t('paused') : t('none')}</p>}
          <h2>{t('durationChart')}</h2>
          {sched && <DurationChart rows={sched.durations} />}
        </div>
      </div>
      <h2>{t('runs')}</h2>
      {runs && <RunTable items={runs.items} />}
      {runs && (
        <nav class="pager">
          <button type="button" disabled={runOffset === 0} onClick={() => setRunOffset(Math.max(0, runOffset - 20))}>{t('prev')}</button>
          <span>{runOffset + 1}–{runOffset + runs.items.length} / {runs.total}</span>
          <button type="button" disabled={runOffset + 20 >= runs.total} onClick={() => setRunOffset(runOffset + 20)}>{t('next')}</button>
        </nav>
      )}
      <h2>{t('history')}</h2>
      <table data-testid="history">
        <thead><tr><th>{t('when')}</th><th>{t('who')}</th><th>{t('what')}</th><th>{t('result')}</th><th>{t('message')}</th></tr></thead>
        <tbody>
          {(history?.history || []).map((h, i) => (
            <tr key={h.id || i} data-action={h.action}>
              <td>{abs(h.timestamp)}</td><td>{h.user}</td><td>{h.action} <span class="muted small">{h.via}</span></td>
              <td><Status value={h.status} /></td><td>{h.error_message || (h.details ? JSON.stringify(h.details) : '')}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  )
}

export function RunTable({ items }) {
  return (
    <table data-testid="runs">
      <thead><tr><th>{t('run')}</th><th>{t('status')}</th><th>{t('trigger_kind')}</th><th>{t('started')}</th><th>{t('duration')}</th><th>{t('source')}</th><th>{t('message')}</th></tr></thead>
      <tbody>
        {items.map((r) => (
          <tr key={r._id || r.id} data-run={r._id || r.id}>
            <td><a href={`#/runs/${encodeURIComponent(r._id || r.id)}`}>{(r._id || r.id).split('.').pop()}</a></td>
            <td><Status value={r.status} /></td>
            <td>{r.is_manual ? t('manual') : t('scheduled')}{r.force ? ` · ${t('forced')}` : ''}</td>
            <td>{abs(r.started_at || r.timestamp)}</td><td>{secs(r.execution_time)}</td><td>{r.source_used || t('none')}</td>
            <td class="small">{r.error_message || r.progress_message || ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
  )
}
