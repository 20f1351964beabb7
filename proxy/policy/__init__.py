"""Pure HTTP caching decisions (RFC 9110 / RFC 9111): no I/O, no clock, no aiohttp.

Every function here takes what it needs as values (`now` included) and returns a value;
`tests/unit/test_policy_purity.py` fails if a module here imports anything with side effects.
"""
