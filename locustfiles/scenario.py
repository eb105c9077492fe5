"""The lab's locustfile by hand: HTTP users, WebSocket subscribers, the scenario's load shape and the
Faults tab, all from the installed package (lab/load/locustfile.py, which `lab run` uses directly):

    LAB_LOAD='{"users": 20, "duration": "2m", "subscribers": {"new_heads": 2}}' LAB_RUN_DIR=reports/manual \
        locust -f locustfiles/scenario.py -H http://127.0.0.1:4000
"""

from lab.load.locustfile import *  # noqa: F403  (Locust runs the User and shape classes it finds here)
