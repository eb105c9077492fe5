"""The Faults tab of Locust's web UI: a page of the lab's own (Locust's extended tabs render tables
only) with a form per target for every action of `lab.faults.actions` (the page draws the forms from
`/lab/faults/api/actions`, the registry's JSON Schemas), served by Locust's Flask app and driving
`FaultAPI` server-side. Locust's own UI gets a "Faults" tab listing what is active, pointing to the page
at /lab/faults.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from lab.webui.faults import FaultAPI, FaultRequestError

__all__ = ["FaultAPI", "install_faults_tab"]
PAGE_PATH = "/lab/faults"
_TAB = "lab-faults"


def install_faults_tab(web_ui: Any, *, run_dir: Path | None = None, api: FaultAPI | None = None) -> FaultAPI:
    """Add the Faults page and API routes to Locust's web UI (call from `events.init`)."""
    from flask import Response, jsonify, request

    api = api or FaultAPI.from_env(run_dir=run_dir)
    app = web_ui.app
    guard = web_ui.auth_required_if_enabled
    page = resources.files(__package__).joinpath("faults.html").read_text(encoding="utf-8")

    def answer(fn: Any) -> Any:
        try:
            return jsonify({"ok": True, **(fn() or {})})
        except FaultRequestError as exc:
            return jsonify({"ok": False, "error": str(exc)}), 400
        except Exception as exc:  # the lab answered badly: tell the page, keep serving
            return jsonify({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), 502

    @app.route(PAGE_PATH)
    @guard
    def lab_faults_page() -> Any:
        return Response(page, mimetype="text/html")

    @app.route(f"{PAGE_PATH}/api/state")
    @guard
    def lab_faults_state() -> Any:
        return jsonify(api.state())

    @app.route(f"{PAGE_PATH}/api/actions")
    @guard
    def lab_faults_actions() -> Any:
        return jsonify(api.actions())

    @app.route(f"{PAGE_PATH}/api/apply", methods=["POST"])
    @guard
    def lab_faults_apply() -> Any:
        body = request.get_json(silent=True) or {}
        return answer(
            lambda: {
                "fault_id": api.apply(
                    str(body.get("target")), str(body.get("action")), body.get("params") or {}
                )
            }
        )

    @app.route(f"{PAGE_PATH}/api/lift", methods=["POST"])
    @guard
    def lab_faults_lift() -> Any:
        body = request.get_json(silent=True) or {}
        return answer(lambda: api.lift(str(body.get("fault_id"))))

    @app.route(f"{PAGE_PATH}/api/lift-all", methods=["POST"])
    @guard
    def lab_faults_lift_all() -> Any:
        return answer(lambda: {"errors": api.lift_all()})

    # Locust's own tab: a table (what its extended tabs can show), refreshed with the request stats.
    web_ui.template_args["extended_tabs"] = [{"title": "Faults", "key": _TAB}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": _TAB,
            "structure": [
                {"key": "fault", "title": "Fault"},
                {"key": "action", "title": "Action"},
                {"key": "target", "title": "Target"},
                {"key": "since", "title": "Active for"},
            ],
        }
    ]

    @app.after_request
    def lab_faults_table(response: Any) -> Any:
        if request.path != "/stats/requests" or not response.is_json:
            return response
        data = response.get_json()
        rows = [
            {
                "fault": f["fault_id"],
                "action": f["action"],
                "target": f["target"],
                "since": f"{f['since_s']:.0f}s",
            }
            for f in api.state()["active"]
        ] or [{"fault": f"none active: apply faults at {PAGE_PATH}", "action": "", "target": "", "since": ""}]
        data["extended_stats"] = [{"key": _TAB, "data": rows}]
        response.set_data(app.json.dumps(data))
        return response

    return api
