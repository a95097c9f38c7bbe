"""Wire formats: what a task and a worker's answer look like on the wire. Pure: no I/O.

``profile`` (the ``generic`` and ``aethermagic`` profiles: task payloads, where workers
answer, who answered), ``aethermagic`` (AetherMagic's topics and JSON bodies, every action),
``pointer`` (RFC 6901 JSON pointers, for ``--worker-field``).
"""
