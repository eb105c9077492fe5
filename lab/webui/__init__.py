"""The Faults tab of Locust's web UI: a page of the lab's own (Locust's extended tabs render tables
only) with a form per target for every action of `lab.faults.actions` (the page draws the forms from
`/lab/faults/api/actions`, the registry's JSON Schemas), served by Locust's Flask app and driving
`FaultAPI` server-side. Locust's own UI gets a "Faults" tab listing what is active, and a link to the
page at /lab/faults in its corner (Locust's tables render text only).

With a run directory (LAB_RUN_DIR) and Locust's environment, each swarm start → stop is a session with a
run directory of its own (lab.webui.session): faults are applied only while one runs, those still active
at stop are lifted into it, the page charts it live and its "Report" button builds its report
(lab.webui.report, in a process of its own) served under /lab/faults/sessions/.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from lab.webui.faults import FaultAPI, FaultRequestError
from lab.webui.play import Player, scenarios_dir
from lab.webui.session import Sessions, runner_load, settings_from

__all__ = ["FaultAPI", "install_faults_tab"]
PAGE_PATH = "/lab/faults"
_TAB = "lab-faults"
REPORT_TIMEOUT_S = 300
STOP_REASON = "the session ended (the swarm stopped)"
log = logging.getLogger(__name__)
LINK_ID = "lab-faults-link"
LINK = (
    f'<a id="{LINK_ID}" href="{PAGE_PATH}" style="position:fixed;bottom:.8rem;left:1rem;z-index:2000;'
    "padding:.25rem .7rem;border-radius:5px;background:#b00020;color:#fff;font:600 14px system-ui,sans-serif;"
    'text-decoration:none">Faults ↗</a>'
)


def install_faults_tab(web_ui: Any, *, run_dir: Path | None = None, api: FaultAPI | None = None) -> FaultAPI:
    """Add the Faults page and API routes to Locust's web UI (call from `events.init`)."""
    from flask import Response, jsonify, request

    environment = getattr(web_ui, "environment", None)
    sessions = Sessions(run_dir, settings=settings_from()) if run_dir is not None and environment else None
    api = api or FaultAPI.from_env(run_dir=run_dir, sessions=sessions)
    sessions = api.sessions
    app = web_ui.app
    guard = web_ui.auth_required_if_enabled
    package = resources.files(__package__)
    page = package.joinpath("faults.html").read_text(encoding="utf-8")
    if sessions is not None and environment is not None:
        api.player = Player(api, sessions, scenarios_dir())
        _run_sessions(api, sessions, environment)

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

    @app.route(f"{PAGE_PATH}/static/<path:name>")
    @guard
    def lab_faults_static(name: str) -> Any:
        from flask import send_from_directory

        return send_from_directory(str(package.joinpath("static")), name)

    @app.route(f"{PAGE_PATH}/api/scenarios")
    @guard
    def lab_faults_scenarios() -> Any:
        return jsonify(api.player.scenarios() if api.player is not None else [])

    @app.route(f"{PAGE_PATH}/api/play", methods=["POST"])
    @guard
    def lab_faults_play() -> Any:
        body = request.get_json(silent=True) or {}

        def play() -> dict[str, Any]:
            if api.player is None:
                raise FaultRequestError("scenarios are played in a session of the web UI (LAB_RUN_DIR)")
            return api.player.play(str(body.get("file")))

        return answer(play)

    @app.route(f"{PAGE_PATH}/api/play/stop", methods=["POST"])
    @guard
    def lab_faults_play_stop() -> Any:
        return answer(lambda: api.player.stop() if api.player is not None else None)

    @app.route(f"{PAGE_PATH}/api/live")
    @guard
    def lab_faults_live() -> Any:
        session = (sessions.current or sessions.latest) if sessions is not None else None
        return jsonify(session.live(time.time()) if session else None)

    @app.route(f"{PAGE_PATH}/api/report", methods=["POST"])
    @guard
    def lab_faults_report() -> Any:
        return answer(lambda: build_report(sessions))

    @app.route(f"{PAGE_PATH}/sessions/<run_id>/<path:name>")
    @guard
    def lab_faults_session_file(run_id: str, name: str) -> Any:
        from flask import abort, send_from_directory

        if sessions is None or not (sessions.root / run_id / "manifest.json").is_file():
            abort(404)
        return send_from_directory(str(sessions.root / run_id), name)

    @app.before_request
    def lab_faults_start_form() -> None:
        """The start form as submitted: the session's manifest records the load set in the UI."""
        if sessions is not None and request.path == "/swarm" and request.method == "POST":
            sessions.note_form(request.form.to_dict(flat=True))

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
    def lab_faults_link(response: Any) -> Any:
        """Locust's page gets a link to the Faults page (its own tabs cannot hold one)."""
        if request.path != "/" or response.mimetype != "text/html" or response.status_code != 200:
            return response
        response.direct_passthrough = False
        html = response.get_data(as_text=True)
        if "</body>" in html and LINK_ID not in html:
            response.set_data(html.replace("</body>", f"{LINK}</body>", 1))
        return response

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
        ] or [
            {
                "fault": f"none active: apply faults at {PAGE_PATH} (the link at the top right)",
                "action": "",
                "target": "",
                "since": "",
            }
        ]
        data["extended_stats"] = [{"key": _TAB, "data": rows}]
        response.set_data(app.json.dumps(data))
        return response

    return api


def build_report(sessions: Sessions | None) -> dict[str, Any]:
    """The report of the running session (so far) or else the last one; its URL on this server."""
    session = (sessions.current or sessions.latest) if sessions is not None else None
    if sessions is None or session is None:
        raise FaultRequestError("no session yet: start a swarm, and its report can be built")
    sessions.file_parts()  # everything recorded so far
    done = subprocess.run(
        [sys.executable, "-m", "lab.webui.report", str(session.path)],
        capture_output=True,
        text=True,
        timeout=REPORT_TIMEOUT_S,
        check=False,
    )
    if done.returncode not in (0, 1):
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(
            f"the report of {session.run_id} failed: {lines[-1] if lines else done.returncode}"
        )
    return {
        "run_id": session.run_id,
        "url": f"{PAGE_PATH}/sessions/{session.run_id}/report.html",
        "verdict": "pass" if done.returncode == 0 else "fail",
    }


def _run_sessions(api: FaultAPI, sessions: Sessions, environment: Any) -> None:
    """Sessions follow Locust's test start and stop (and the master's shutdown); a thread files the
    record into them every second."""
    left = sessions.recover()
    if any(e.get("action") == "cut" or "toxic" in (e.get("params") or {}) for e in left):
        try:
            api.injector.toxiproxy.reset()  # what a master that died left in Toxiproxy
        except Exception as exc:
            log.warning("could not reset Toxiproxy after an interrupted session: %s", exc)
    events = environment.events

    def started(**_: Any) -> None:
        sessions.start(runner_load(environment))

    def stopped(outcome: str) -> None:
        if sessions.current is None:
            return
        errors = api.lift_all(reason=STOP_REASON)
        for error in errors:
            log.warning("a fault could not be lifted at the session's end: %s", error)
        sessions.stop(outcome=outcome)

    events.test_start.add_listener(started)
    events.test_stop.add_listener(lambda **_: stopped("stopped"))

    done = threading.Event()

    def shut_down(**_: Any) -> None:
        stopped("shut down")
        done.set()
        sessions.file_parts()
        sessions.close()

    events.quitting.add_listener(shut_down)

    def file_every_second() -> None:
        while not done.wait(1.0):
            try:
                sessions.file_parts()
            except Exception:  # keep filing: a full disk is the report's to tell
                log.exception("filing the record into the session failed")

    threading.Thread(target=file_every_second, name="lab-sessions", daemon=True).start()
