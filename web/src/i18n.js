// The dashboard's words, Chinese first (the incumbent's users read Chinese), English switchable.
// One dictionary per language with the same keys; t(key, vars) fills {name} placeholders.
const zh = {
  title: '数据同步调度', signIn: '登录', signOut: '退出', token: '访问令牌 (Bearer token)',
  tokenHelp: '令牌只保存在本浏览器会话中，关闭标签页即清除。', signInFailed: '登录失败',
  nav_jobs: '任务', nav_runs: '运行中', nav_health: '健康', lang: 'English',
  viewer: '只读', admin: '管理员', zone: '时区',
  jobs: '定时任务', job: '任务', name: '名称', namespace: '命名空间', task: '类型', sources: '数据源',
  schedule: '调度', nextRun: '下次运行', paused: '已暂停', active: '运行', lastRun: '最近一次',
  successRate7d: '7天成功率', median7d: '7天中位耗时', recentRuns: '最近20次', actions: '操作',
  all: '全部', search: '搜索名称', status: '状态', shown: '显示 {n} / {total} 个（共 {all} 个）',
  prev: '上一页', next: '下一页', never: '从未运行', none: '—', refresh: '刷新',
  trigger: '立即执行', force: '强制执行', pause: '暂停', resume: '恢复', cancel: '取消运行',
  markFailed: '标记失败', delete: '删除记录', edit: '编辑', save: '保存', displayName: '显示名称',
  description: '描述', confirmForce: '强制执行会跳过交易时段检查。确定对 {name} 强制执行吗？',
  confirmCancel: '确定取消运行 {id} 吗？此操作无法撤销。', askReason: '标记 {id} 为失败的原因：',
  confirmDelete: '确定删除执行记录 {id} 吗？此操作无法撤销。',
  spec: '规格', conditions: '状态条件', next10: '接下来 10 次', runs: '运行记录', history: '操作历史',
  durationChart: '耗时趋势（最近 100 次）', who: '操作人', when: '时间', what: '操作', result: '结果',
  runsNow: '正在运行', finished: '已结束', progress: '进度', processed: '已处理', currentItem: '当前项',
  message: '消息', source: '数据源', elapsed: '已运行', heartbeat: '心跳', noRunning: '当前没有运行中的任务',
  live: '实时', reconnecting: '重新连接中…', polling: '轮询（每2秒）', run: '运行', reason: '原因', trigger_kind: '触发方式',
  askedBy: '请求人', attempts: '尝试', counts: '数据统计', inserted: '新增', updated: '更新',
  unchanged: '未变', failedItems: '失败', gapReport: '缺口报告', taskReport: '任务报告', error: '错误信息', traceback: '堆栈',
  started: '开始', finishedAt: '结束', duration: '耗时', health: '系统健康', operator: '调度器 (operator)',
  mongodb: 'MongoDB', kubernetes: 'Kubernetes API', cache: '缓存', ok: '正常', down: '故障',
  bannerDown: '系统异常：{what}', bannerApi: '无法连接 API：页面显示的是最后一次获取的数据，正在重试…',
  scheduled: '定时', manual: '手动', forced: '强制', yes: '是', no: '否', page: '第 {n} 页',
  in: '{d}后', ago: '{d}前', sec: '{n} 秒', min: '{n} 分钟', hour: '{n} 小时', day: '{n} 天',
  apiAnswer: 'API 返回', ready: '就绪', spec_concurrency: '并发策略', spec_tradingHours: '仅交易时段',
  spec_deadline: '运行时限（秒）', spec_backoff: '重试次数', options: '参数', pod: 'Pod', outcome: '结果',
  loading: '加载中…', back: '返回',
}

const en = {
  title: 'Sync scheduler', signIn: 'Sign in', signOut: 'Sign out', token: 'Access token (Bearer token)',
  tokenHelp: 'The token is kept for this browser session only and cleared when the tab closes.',
  signInFailed: 'Sign-in failed',
  nav_jobs: 'Jobs', nav_runs: 'Runs now', nav_health: 'Health', lang: '中文',
  viewer: 'viewer', admin: 'admin', zone: 'Time zone',
  jobs: 'Sync jobs', job: 'Job', name: 'Name', namespace: 'Namespace', task: 'Task', sources: 'Sources',
  schedule: 'Schedule', nextRun: 'Next run', paused: 'Paused', active: 'Active', lastRun: 'Last run',
  successRate7d: 'Success 7d', median7d: 'Median 7d', recentRuns: 'Last 20 runs', actions: 'Actions',
  all: 'All', search: 'Search name', status: 'Status', shown: 'Showing {n} of {total} ({all} in all)',
  prev: 'Previous', next: 'Next', never: 'never ran', none: '—', refresh: 'Refresh',
  trigger: 'Run now', force: 'Force run', pause: 'Pause', resume: 'Resume', cancel: 'Cancel run',
  markFailed: 'Mark failed', delete: 'Delete record', edit: 'Edit', save: 'Save', displayName: 'Display name',
  description: 'Description', confirmForce: 'A forced run skips the trading-hours check. Force a run of {name}?',
  confirmCancel: 'Cancel run {id}? This cannot be undone.', askReason: 'Why is {id} failed?',
  confirmDelete: 'Delete the record of run {id}? This cannot be undone.',
  spec: 'Spec', conditions: 'Conditions', next10: 'Next 10 runs', runs: 'Runs', history: 'Action history',
  durationChart: 'Duration (last 100 runs)', who: 'Who', when: 'When', what: 'Action', result: 'Result',
  runsNow: 'Running now', finished: 'Finished', progress: 'Progress', processed: 'Processed',
  currentItem: 'Current item', message: 'Message', source: 'Source', elapsed: 'Elapsed', heartbeat: 'Heartbeat',
  noRunning: 'Nothing is running', live: 'live', reconnecting: 'reconnecting…', polling: 'polling (every 2 s)', run: 'Run', reason: 'Reason',
  trigger_kind: 'Trigger', askedBy: 'Asked by', attempts: 'Attempts', counts: 'Counts', inserted: 'inserted',
  updated: 'updated', unchanged: 'unchanged', failedItems: 'failed', gapReport: 'Gap report', taskReport: 'Task report', error: 'Error',
  traceback: 'Traceback', started: 'Started', finishedAt: 'Finished', duration: 'Duration',
  health: 'Health', operator: 'Operator', mongodb: 'MongoDB', kubernetes: 'Kubernetes API', cache: 'Cache',
  ok: 'OK', down: 'DOWN', bannerDown: 'Degraded: {what}',
  bannerApi: 'The API cannot be reached: showing the last data fetched, retrying…',
  scheduled: 'schedule', manual: 'manual', forced: 'forced', yes: 'yes', no: 'no', page: 'page {n}',
  in: 'in {d}', ago: '{d} ago', sec: '{n} s', min: '{n} min', hour: '{n} h', day: '{n} d',
  apiAnswer: 'API answered', ready: 'Ready', spec_concurrency: 'Concurrency', spec_tradingHours: 'Trading hours only',
  spec_deadline: 'Deadline (s)', spec_backoff: 'Retries', options: 'Options', pod: 'Pod', outcome: 'Outcome',
  loading: 'Loading…', back: 'Back',
}

export const dictionaries = { zh, en }
let current = localStorage.getItem('syncjob.lang') === 'en' ? 'en' : 'zh'

export function getLang() { return current }

// The App keeps the language in its state too, so switching re-renders every view.
export function setLang(value) {
  current = value
  localStorage.setItem('syncjob.lang', value)
  document.documentElement.lang = value === 'zh' ? 'zh-CN' : 'en'
}

export function t(key, vars = {}) {
  const text = dictionaries[current][key] ?? dictionaries.zh[key] ?? key
  return text.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? ''))
}
