// Calls to the scheduler API with the bearer token the user signed in with (kept in sessionStorage only).
// Every answer comes back as {ok, status, message, data}: the page shows the API's message verbatim.

const KEY = 'syncjob.token'
const listeners = new Set()

export const session = {
  get token() { return sessionStorage.getItem(KEY) },
  set(token) { sessionStorage.setItem(KEY, token) },
  clear() { sessionStorage.removeItem(KEY) },
}

// reachability: listeners hear true/false as requests succeed or fail to reach the API
export function onReachable(fn) { listeners.add(fn); return () => listeners.delete(fn) }
let unauthorized = () => {}
export function onUnauthorized(fn) { unauthorized = fn }

export async function call(method, path, { query, body, token } = {}) {
  const url = new URL(`/api/scheduler${path}`, location.origin)
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v)
  }
  const headers = { Accept: 'application/json' }
  const bearer = token ?? session.token
  if (bearer) headers.Authorization = `Bearer ${bearer}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  let res
  try {
    res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  } catch (err) {
    listeners.forEach((fn) => fn(false))
    return { ok: false, status: 0, message: `network error: ${err.message}`, data: null }
  }
  listeners.forEach((fn) => fn(res.status !== 502 && res.status !== 504))
  let payload = null
  try { payload = await res.json() } catch { payload = null }
  const message = payload?.message ?? `${res.status} ${res.statusText}`
  if (res.status === 401 && token === undefined) unauthorized(message)
  return { ok: res.ok, status: res.status, message, data: payload?.data ?? null }
}

export const get = (path, query) => call('GET', path, { query })

// A read started before the view that needs it exists (the job table's first page, at page load, alongside the
// sign-in check): the view takes it once, within 5 s, instead of asking again.
const early = new Map()
const keyOf = (path, query) => `${path}?${JSON.stringify(query || {})}`
export function prefetch(path, query) {
  early.set(keyOf(path, query), { at: Date.now(), promise: get(path, query) })
}
export function getOnce(path, query) {
  const key = keyOf(path, query)
  const found = early.get(key)
  early.delete(key)
  return found && Date.now() - found.at < 5000 ? found.promise : get(path, query)
}
