"""moto's server answering one request at a time (``python -P moto_serial.py -H HOST -p PORT``).

moto keeps no lock around its backends: under load two concurrent ``TransactWriteItems`` can both pass the same
``ConditionExpression`` (both read the old revision counter, both write), which real DynamoDB never allows (its
transactions are serialisable). The DynamoDB engine's no-lost-update test failed about one run in three on a
loaded machine for that reason alone. Serialising requests makes moto's transactions atomic, as DynamoDB's are;
connections stay concurrent (threaded, keep-alive), only the backend work is one at a time."""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:  # the whole answer is made under the lock: a lazy body could still touch the backend
            return list(app(environ, start_response))

    run_simple(args.host, args.port, serial, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
