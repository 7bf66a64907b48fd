"""The one TLS context that every HTTP client of the engine shares within a process.

httpx builds a context for each client it is not given one: that loads the CA bundle, about
30 ms of CPU, for every observer, executor, chaos step and lab readiness probe (`opctl lab up`
probes every 50 ms while a process starts). This is the context httpx would build (its own
defaults: SSL_CERT_FILE or SSL_CERT_DIR when set, else certifi's bundle), built once.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
