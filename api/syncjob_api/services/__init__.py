"""What the routes call: the SyncJob cache, job views, execution queries and mutations, the audit trail, health."""
