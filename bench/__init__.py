"""Benchmark harness for mediaproxy against nginx proxy_cache and Varnish (`make bench`)."""
