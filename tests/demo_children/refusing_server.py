"""A deliberately weakened demo server: once its state has moved, it refuses the
requests it still holds with ``503 Retry-After: 0`` instead of passing them on.

Nothing is lost (the refused writes were never acknowledged), but a client that does
not retry sees an error: the demo's checks must count the 5xx answers and fail.
"""

from __future__ import annotations

import sys

from statemigrate.demo import _server


class RefusingHandler(_server._Handler):
    def _forward(self, body: bytes) -> None:
        self.send_response(503)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()


if __name__ == "__main__":
    _server._Handler = RefusingHandler  # type: ignore[misc]
    sys.exit(_server.main())
