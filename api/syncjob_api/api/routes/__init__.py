"""One APIRouter per resource under /api/scheduler: jobs, executions, history, system (stats and health)."""
