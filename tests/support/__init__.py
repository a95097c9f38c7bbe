"""Plain helpers shared by the test modules (pytest puts ``tests/`` on ``sys.path`` through
``pythonpath`` in pyproject.toml, mypy through ``mypy_path``): import them by name,
``from support.brokers import start_mosquitto``. Fixtures stay in ``tests/conftest.py``.

- ``brokers``: free ports, waiting for a port, private Mosquitto processes.
- ``cli``: driving ``aetherdiag`` through typer's CliRunner, and reading its JSON report.
- ``mqttclient``: a recording paho-mqtt client and a raw socket client.
- ``paths``: where the repository's scenario library and the test worker programs are.
- ``probe``: reading a ProbeReport in assertion messages.
- ``tlsdata``: PEM test data (a self-signed certificate and keys).
"""
