// Small shared pieces: status badges, the run strip, the answer line, an action button, the progress bar.
import { useEffect, useState } from 'preact/hooks'
import { call } from './api.js'
import { t } from './i18n.js'
import { abs, secs } from './time.js'

export function Status({ value }) {
  if (!value) return <span class="badge muted">{t('never')}</span>
  return <span class={`badge s-${value}`} data-status={value}>{value}</span>
}

export function Strip({ runs }) {
  // newest last, so the strip reads left to right like time
  const ordered = [...(runs || [])].reverse()
  return (
    <span class="strip" aria-label={t('recentRuns')}>
      {ordered.map((r) => (
        <a key={r.id} href={`#/runs/${encodeURIComponent(r.id)}`} class={`mark s-${r.status}`}
           title={`${r.status} · ${abs(r.timestamp)} · ${secs(r.execution_time)}`} aria-label={`${r.status} ${abs(r.timestamp)}`} />
      ))}
    </span>
  )
}

export function ProgressBar({ value, label }) {
  const pct = Math.max(0, Math.min(100, Number(value) || 0))
  return (
    <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow={pct.toFixed(0)}
         aria-label={label} data-testid="progress">
      <div class="fill" style={{ width: `${pct}%` }} />
      <span class="pct">{pct.toFixed(0)}%</span>
    </div>
  )
}

// A one-line record of the last action's answer, shown verbatim (409 and 422 messages included).
let announce = () => {}
export function Answer() {
  const [answer, setAnswer] = useState(null)
  useEffect(() => { announce = setAnswer }, [])
  if (!answer) return <div role="status" aria-live="polite" class="answer empty" data-testid="answer" />
  return (
    <div role="status" aria-live="polite" class={`answer ${answer.ok ? 'good' : 'bad'}`} data-testid="answer"
         data-status={answer.status}>
      <strong>{answer.label}</strong> · {t('apiAnswer')} {answer.status}: <span class="verbatim">{answer.message}</span>
      <button type="button" class="link" onClick={() => setAnswer(null)} aria-label="close">×</button>
    </div>
  )
}

// An admin action: optional confirmation (for what cannot be undone), the REST call, the answer shown, then done().
export async function act({ label, method, path, query, body, confirm, prompt, done }) {
  if (confirm && !window.confirm(confirm)) return null
  let q = query
  if (prompt) {
    const reason = window.prompt(prompt.text, prompt.default || '')
    if (reason === null) return null
    q = { ...(query || {}), [prompt.param]: reason }
  }
  const res = await call(method, path, { query: q, body })
  announce({ ...res, label })
  if (done) done(res)
  return res
}

export function Kv({ rows }) {
  return (
    <dl class="kv">
      {rows.filter(Boolean).map(([k, v]) => [<dt key={`${k}-k`}>{k}</dt>, <dd key={`${k}-v`}>{v ?? t('none')}</dd>])}
    </dl>
  )
}

// re-render every second (relative times, elapsed, heartbeat age)
export function useTick(ms = 1000) {
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), ms)
    return () => clearInterval(id)
  }, [ms])
  return now
}

// refetch on an interval while the tab is visible (as Dagster does); `deps` refetch at once
export function usePoll(load, ms, deps) {
  useEffect(() => {
    let stopped = false
    let timer = null
    const run = async () => {
      if (stopped) return
      if (document.visibilityState !== 'hidden') await load()
      if (!stopped) timer = setTimeout(run, ms)
    }
    run()
    return () => { stopped = true; clearTimeout(timer) }
  }, deps)
}
