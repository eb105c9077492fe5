"""The load: Locust's side of the lab, shipped in the package so that an installed lab runs without a
source checkout.

Building blocks that never import Locust (the orchestrator may import them): settings from the
environment, the JSON-RPC method mix and classification (rpc), the WebSocket subscription (ws), the load
shape and the run-record writer (recorder). What imports Locust, and so runs only in Locust's own process
(Locust monkey-patches with gevent at import): the users (http_user, ws_user) and the locustfile that
puts them together with the shape and the Faults tab (locustfile.py, at LOCUSTFILE). The top-level
`locustfiles/` of a checkout are thin entry points importing these.
"""

from pathlib import Path

# A path, not an import: Locust loads a locustfile from its file, and importing it here would import Locust.
LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
# Written by the locustfile at Locust's test_start: `lab run` counts fault offsets from it.
STARTED_MARKER = "locust/started.json"
