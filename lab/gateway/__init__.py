"""The lab's reference gateway: a JSON-RPC load balancer speaking Lasso RPC's public API.

It is what the lab's checks are written against: circuit breakers, bounded retries with failover,
lag-aware routing, WebSocket subscriptions that recover without gaps, routing metadata and an event
stream, each of which can be configured weak. See README.md in this directory.
"""
