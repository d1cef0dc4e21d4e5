"""The sync image: fetches market data with source fallback and reports its run to MongoDB."""
