"""Contract tests for Toxiproxy's REST API and toxics, runnable against any Toxiproxy-compatible server."""
