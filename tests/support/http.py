"""GET over HTTP from a local port, for the tests of the metrics and health endpoints."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """The status and body of GET http://127.0.0.1:`port``path`; (0, b"") while nothing listens there yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())
    except urllib.error.URLError:
        return 0, b""
