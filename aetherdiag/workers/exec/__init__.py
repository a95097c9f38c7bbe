"""``workers --exec``: the team's own worker processes, judged like built-in ones.

Modules: ``model`` (the plan, the processes, the outcome, ``ExecError``), ``command`` (the
worker command template), ``procs`` (the worker processes), ``peers`` (which process owns a TCP
connection, psutil), ``observe`` (the replies and announcements seen, and the progress) and
``run`` (the run: broker, processes, publishing, attribution). Nothing is imported here.
"""
