"""lab: a containerized fault-injection lab for JSON-RPC gateways."""

__version__ = "0.1.0"
