// Times in Asia/Shanghai with the zone shown, and relative times ("in 4 min").
import { t } from './i18n.js'

export const ZONE = 'Asia/Shanghai'
const fmt = new Intl.DateTimeFormat('sv-SE', {
  timeZone: ZONE, year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
})

export function abs(iso) {
  if (!iso) return t('none')
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? String(iso) : fmt.format(d)
}

export function span(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return t('none')
  const s = Math.abs(seconds)
  if (s < 90) return t('sec', { n: Math.round(s) })
  if (s < 90 * 60) return t('min', { n: Math.round(s / 60) })
  if (s < 36 * 3600) return t('hour', { n: (s / 3600).toFixed(1) })
  return t('day', { n: (s / 86400).toFixed(1) })
}

export function rel(iso, now = Date.now()) {
  if (!iso) return ''
  const diff = (new Date(iso).getTime() - now) / 1000
  return diff >= 0 ? t('in', { d: span(diff) }) : t('ago', { d: span(diff) })
}

export function since(iso, now = Date.now()) {
  if (!iso) return null
  return Math.max(0, (now - new Date(iso).getTime()) / 1000)
}

export function secs(value) {
  if (value === null || value === undefined) return t('none')
  return value < 100 ? `${value.toFixed(1)} s` : span(value)
}
