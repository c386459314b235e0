"""Run moto's server with every request handled one at a time.

Usage: ``python moto_runner.py --host 127.0.0.1 --port PORT [--switch-interval S]``

Why this exists instead of ``python -m moto.server``:

* ``moto.server.main`` (moto 5.x) serves its Flask app with werkzeug's
  ``run_simple(..., threaded=True)`` and has no option to turn threading off
  (its flags are only ``-H -p -r -s -c -k``).
* moto has no lock around request handling: ``DomainDispatcherApplication``
  locks only the lookup/creation of the per-service app.  DynamoDB's
  ``Table.put_item`` / ``update_item`` read the current item, evaluate the
  ``ConditionExpression`` and then store, in plain Python with no lock, so two
  concurrent conditional writes to one key can both pass the check.
* Reproduced with moto 5.2.5: 8 threads racing ``PutItem`` with
  ``attribute_not_exists(pk)`` on one key, 60 rounds, against
  ``python -m moto.server`` with ``sys.setswitchinterval(1e-6)`` (which only
  makes thread preemption more frequent): 4 rounds had two winners, and a
  compare-and-set counter (8 threads x 15 increments guarded by ``v = :v``)
  ended at 118 instead of 120.  With the default switch interval it is rare,
  but nothing prevents it on a loaded machine, and conformance tests for
  atomic operations must not be flaky.  Through this runner: 0 double winners
  and exact counts under the same settings.

Choice: we build the app exactly as ``moto.server.main`` does
(``DomainDispatcherApplication(create_backend_app)`` + ``MotoRequestHandler``)
and wrap the WSGI app in one global lock.  The HTTP server itself stays
threaded, so an idle keep-alive connection of one client cannot stop others
from being accepted; only the application call (reading the request body,
running moto, and building the whole response body) is serialised.  This is
simpler and more robust than ``threaded=False``, which would let one slow
connection block the accept loop.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SerializedApp:
    """WSGI middleware: one request at a time through ``app``."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        with self._lock:
            result = self._app(environ, start_response)
            try:
                return [bytes(chunk) for chunk in result]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto server, requests serialised")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval() value; a testing aid that makes thread races likelier",
    )
    args = parser.parse_args(argv)

    # Run as a script, Python put this package's directory first on sys.path, where our
    # servers.py, fixtures.py, ... could shadow top-level modules; moto needs none of them.
    if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    # moto builds some URLs (e.g. SQS queue URLs) from MOTO_PORT, as moto.server.main does.
    os.environ.setdefault("MOTO_PORT", str(args.port))

    main_app = DomainDispatcherApplication(create_backend_app)
    main_app.debug = True  # type: ignore[attr-defined]  # as moto.server.main does
    run_simple(
        args.host,
        args.port,
        SerializedApp(main_app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
