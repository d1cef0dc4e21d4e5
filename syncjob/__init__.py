"""The shared vocabulary of syncjob-operator: the typed SyncJob model, API names, annotations and MongoDB contracts.

Imported by the operator, the API, the sync image and the tests; it imports none of them.
"""
