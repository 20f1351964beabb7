"""The exception tree, one branch per layer; `proxy.app` maps it to HTTP in one middleware.

    ProxyError(status)              anything we raise on purpose
    ├── ConfigError                 bad configuration: stops start-up, never reaches a client
    ├── StartupError                a port taken, the cache dir locked: stops start-up (exit 1)
    ├── BadRequest          400     malformed URL, path traversal, oversize or bad headers
    ├── AuthError           401/403 missing or invalid token (reason is machine-readable)
    ├── OriginError         502     origin unreachable, refused, broke the connection
    │   └── OriginTimeout   504     origin did not answer in time
    ├── ClusterUnavailable  503     Redis unreachable (proxy/cluster/; the admin API reports
    │                               it per node, never to public clients)
    ├── StoreError          503     the cache directory failed; handled as a miss or PASS
    │                               (only a PURGE, which needs the store, can see it)
    └── ImageRefused        415/422 a conversion refused: not an allowed image type (415),
        │                           over a limit: bytes, pixels, frames, output size (422)
        ├── ConversionTimeout 422   the conversion took longer than images.timeout_seconds
        └── ConversionCrashed 422   the conversion process died (the image is the suspect)

Policy code never raises these: it returns outcomes (an unsatisfiable range is a value).
"""

from __future__ import annotations


class ProxyError(Exception):
    """Base of every error we raise on purpose; `status` is the HTTP status it maps to."""

    status: int = 500
    reason: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ProxyError):
    reason = "config_error"


class BadRequest(ProxyError):
    status = 400
    reason = "bad_request"


class AuthError(ProxyError):
    status = 403
    reason = "forbidden"

    def __init__(self, message: str, *, status: int = 403, reason: str = "forbidden") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class OriginError(ProxyError):
    status = 502
    reason = "origin_error"


class OriginTimeout(OriginError):
    status = 504
    reason = "origin_timeout"


class StoreError(ProxyError):
    status = 503  # only reaches a client on purge, where the store is the whole point
    reason = "store_error"


class StartupError(ProxyError):
    """The process cannot start as configured: a port taken, the cache directory locked by
    another instance, workers failing at start. The CLI prints it in one line, exit status 1."""

    reason = "startup_error"


class ImageRefused(ProxyError):
    """A conversion the engine will not (or could not) make; `reason` is machine-readable
    (`not_an_allowed_image`, `source_too_large`, `too_many_pixels`, ...)."""

    status = 422
    reason = "image_over_limits"

    def __init__(self, message: str, *, status: int = 422, reason: str = "image_over_limits"
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class ConversionTimeout(ImageRefused):
    def __init__(self, message: str) -> None:
        super().__init__(message, reason="conversion_timeout")


class ConversionCrashed(ImageRefused):
    def __init__(self, message: str) -> None:
        super().__init__(message, reason="conversion_crashed")
