"""JSON-RPC over HTTP through the gateway, from the installed package (lab/load/http_user.py):

locust -f locustfiles/http_user.py -H http://127.0.0.1:4000 -u 20 -r 10
"""

from lab.load.http_user import JsonRpcUser

__all__ = ["JsonRpcUser"]  # Locust runs the User classes it finds in this module
