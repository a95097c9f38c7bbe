"""Worker fleet and publisher that run a plan against any broker and record deliveries.

Modules: ``model`` (the typed values), ``target`` (``--broker URL`` parsing), ``embedded``
(starting the emulator for a run), ``fleet`` (the public ``Fleet``; ``churn`` holds its replay
steps), and the pieces it is built from: ``loop`` (one selector thread for every paho client),
``clients`` (client construction, connection errors), ``member``/``worker``/``publisher``
(the clients' behaviour) and ``recorder`` (what a run observed). Nothing is imported here, so
``harness.model`` stays cheap for code that never touches the network.
"""
