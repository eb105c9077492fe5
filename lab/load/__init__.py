"""The traffic's building blocks, imported by the locustfiles (which run in Locust's own process):
settings from the environment, the JSON-RPC method mix and classification, the WebSocket subscription,
the load shape and the run-record writer. Nothing here imports Locust."""
