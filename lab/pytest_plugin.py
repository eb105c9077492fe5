"""The lab's pytest plugin (placeholder until the topology fixtures land)."""
