"""The request lifecycle: typed steps (`steps`), one driver loop (`driver`), one module per path.

Only `proxy.app` imports this package (its `Proxy`); see `steps.py` for the rule.
"""

from proxy.lifecycle.driver import Proxy

__all__ = ["Proxy"]
