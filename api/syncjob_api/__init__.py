"""The scheduler REST API: the seed's /api/scheduler endpoints served from SyncJobs and MongoDB."""
