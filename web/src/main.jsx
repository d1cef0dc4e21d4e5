// The dashboard: sign-in with a bearer token (session only), the health banner, and hash routes:
//   #/jobs  #/jobs/<namespace>/<name>  #/runs  #/runs/<run id>  #/health
import { render } from 'preact'
import { useCallback, useEffect, useState } from 'preact/hooks'
import { call, get, onReachable, onUnauthorized, prefetch, session } from './api.js'
import { getLang, setLang, t } from './i18n.js'
import { FIRST_PAGE, Job, Jobs } from './jobs.jsx'
import { Run, RunsNow } from './runs.jsx'
import { useRunFeed } from './stream.js'
import { ZONE, abs } from './time.js'
import { Answer, Kv, usePoll } from './ui.jsx'
import './style.css'

function useRoute() {
  const [hash, setHash] = useState(location.hash || '#/jobs')
  useEffect(() => {
    const on = () => setHash(location.hash || '#/jobs')
    addEventListener('hashchange', on)
    return () => removeEventListener('hashchange', on)
  }, [])
  return hash.slice(2).split('/').map(decodeURIComponent)
}

function SignIn({ message, onSignedIn }) {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState(message)
  useEffect(() => setError(message), [message])
  const submit = async (e) => {
    e.preventDefault()
    const token = new FormData(e.currentTarget).get('token').trim()
    if (!token) return
    setBusy(true)
    const res = await call('GET', '/dashboard/me', { token })
    setBusy(false)
    if (res.ok) { session.set(token); onSignedIn(res.data) } else setError(`${t('signInFailed')}: ${res.status} ${res.message}`)
  }
  return (
    <main class="signin">
      <h1>{t('title')}</h1>
      <form onSubmit={submit} data-testid="signin">
        <label for="token">{t('token')}</label>
        <input id="token" name="token" type="password" autocomplete="off" required />
        <p class="muted small">{t('tokenHelp')}</p>
        {error && <p class="error" role="alert" data-testid="signin-error">{error}</p>}
        <button type="submit" disabled={busy}>{t('signIn')}</button>
      </form>
    </main>
  )
}

function Health({ health }) {
  if (!health) return <p>{t('loading')}</p>
  const c = health.components
  const row = (key, comp) => [t(key), <span data-component={key} data-ok={String(comp.ok)}>
    <span class={`badge ${comp.ok ? 's-success' : 's-failed'}`}>{comp.ok ? t('ok') : t('down')}</span> {comp.message}</span>]
  return (
    <section>
      <h1>{t('health')}</h1>
      <Kv rows={[row('operator', c.operator), row('mongodb', c.mongodb), row('kubernetes', c.kubernetes), row('cache', c.cache),
                 [t('when'), abs(health.timestamp)]]} />
      <p class="muted small">cache: {c.cache.jobs} SyncJobs · last synced {abs(c.cache.last_synced_at)}</p>
    </section>
  )
}

function App() {
  const [, setLng] = useState(getLang())
  const [me, setMe] = useState(null)
  const [signInMessage, setSignInMessage] = useState(null)
  const [checking, setChecking] = useState(Boolean(session.token))
  const [health, setHealth] = useState(null)
  const [reachable, setReachable] = useState(true)
  const route = useRoute()

  useEffect(() => onReachable(setReachable), [])
  useEffect(() => {
    onUnauthorized((message) => { session.clear(); setMe(null); setSignInMessage(message) })
    if (session.token) {
      get('/dashboard/me').then((res) => { setChecking(false); if (res.ok) setMe(res.data) })
    }
  }, [])
  const loadHealth = useCallback(async () => {
    if (!session.token) return
    const res = await get('/health')
    if (res.ok) setHealth(res.data)
  }, [])
  usePoll(loadHealth, 3000, [me])
  const feed = useRunFeed(Boolean(me))

  const toggle = () => { const next = getLang() === 'zh' ? 'en' : 'zh'; setLang(next); setLng(next) }
  if (checking) return <p>{t('loading')}</p>
  if (!me) return <SignIn message={signInMessage} onSignedIn={(who) => { setSignInMessage(null); setMe(who) }} />
  const admin = me.role === 'admin'
  const down = health?.down?.length ? health.down.map((d) => t(d)).join(', ') : null
  const [view, a, b] = route
  let body
  if (view === 'jobs' && a && b) body = <Job namespace={a} name={b} admin={admin} />
  else if (view === 'runs' && a) body = <Run id={a} admin={admin} feed={feed} />
  else if (view === 'runs') body = <RunsNow feed={feed} admin={admin} />
  else if (view === 'health') body = <Health health={health} />
  else body = <Jobs admin={admin} />
  return (
    <>
      <header class="top">
        <strong class="brand">{t('title')}</strong>
        <nav>
          <a href="#/jobs" aria-current={view === 'jobs' ? 'page' : undefined}>{t('nav_jobs')}</a>
          <a href="#/runs" aria-current={view === 'runs' ? 'page' : undefined}>
            {t('nav_runs')} <span class="count" data-testid="running-count">{Object.keys(feed.running).length}</span>
          </a>
          <a href="#/health" aria-current={view === 'health' ? 'page' : undefined}>{t('nav_health')}</a>
        </nav>
        <span class="muted small">{t('zone')} {ZONE} (UTC+08:00)</span>
        <span class="user" data-testid="user" data-role={me.role}>{me.user} · {t(me.role)}</span>
        <button type="button" class="link" onClick={toggle} data-testid="lang">{t('lang')}</button>
        <button type="button" class="link" onClick={() => { session.clear(); setMe(null) }}>{t('signOut')}</button>
      </header>
      {!reachable && <div class="banner" role="alert" data-testid="banner">{t('bannerApi')}</div>}
      {reachable && down && <div class="banner" role="alert" data-testid="banner">{t('bannerDown', { what: down })}</div>}
      <Answer />
      <main>{body}</main>
    </>
  )
}

// signed in already and opening the job table: its first page is fetched alongside the sign-in check
if (session.token && ['', '#', '#/', '#/jobs'].includes(location.hash)) prefetch('/dashboard/jobs', FIRST_PAGE)
render(<App />, document.getElementById('app'))
