"""The compose lab's control service and its client.

`lab control` (lab.control.cli, lab.control.service) is a small HTTP service of the compose lab that
holds the Docker socket and acts only on its own compose project's containers of the services it was
given, with the actions the lab's faults need. `containers_from_env` (lab.control.client) is what the
Faults tab gives the fault engine: the lab's containers through that service, never Docker itself.
"""

from lab.control.client import (
    ControlServiceClient,
    ControlServiceError,
    RemoteContainers,
    containers_from_env,
    services_from_env,
)

__all__ = [
    "ControlServiceClient",
    "ControlServiceError",
    "RemoteContainers",
    "containers_from_env",
    "services_from_env",
]
