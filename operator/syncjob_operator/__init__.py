"""The kopf operator: reconciles SyncJobs into CronJobs, turns request tokens into runs, keeps status honest."""
