"""WebSocket subscribers (newHeads, logs) through the gateway, from the installed package
(lab/load/ws_user.py):

    locust -f locustfiles/ws_user.py -H http://127.0.0.1:4000 -u 2 -r 2
"""

from lab.load.ws_user import LogsSubscriber, NewHeadsSubscriber

__all__ = ["LogsSubscriber", "NewHeadsSubscriber"]  # Locust runs the User classes it finds in this module
