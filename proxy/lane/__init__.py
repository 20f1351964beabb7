"""The lane: repeated plain GETs of memory-tier hits answered from the connection's parser,
in front of the request lifecycle (handler.py), from routes the lifecycle made (routes.py)."""
