"""Test-only behaviour injected into conversion processes (ConversionPool's initializer):
a source starting with b"HANG" hangs, one starting with b"CRASH" kills its process."""

import os
import time

from proxy.images import convert as conversion


def install() -> None:
    real = conversion.convert

    def convert(source, spec, limits, out_path=None):  # type: ignore[no-untyped-def]
        if isinstance(source, bytes) and source.startswith(b"HANG"):
            if len(source) > 4:  # b"HANG/path": tell the test the job arrived
                open(source[4:], "wb").close()
            while True:
                time.sleep(3600)
        if isinstance(source, bytes) and source.startswith(b"CRASH"):
            os._exit(70)
        return real(source, spec, limits, out_path)

    conversion.convert = convert
