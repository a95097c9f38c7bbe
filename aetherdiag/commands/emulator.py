"""``aetherdiag emulator``: run the embedded broker emulator on its own."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import typer

from ..emulator import FAULTS, STRATEGIES, Broker, EmulatorServer
from ..emulator.sharing import UnknownName
from ..exitcodes import Abort, ExitCode

app = typer.Typer(help="Run the embedded MQTT broker emulator.", no_args_is_help=True)

_FAULT_HELP = "; ".join(f"{k}: {v}" for k, v in FAULTS.items())
_STRATEGY_HELP = "; ".join(f"{k}: {v}" for k, v in STRATEGIES.items())


def parse_group_strategies(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        group, sep, strategy = value.partition("=")
        if not sep or not group or not strategy:
            raise Abort(f"--group-strategy {value!r}: expected GROUP=STRATEGY", ExitCode.USAGE)
        out[group] = strategy
    return out


@app.command(
    epilog="Examples:\n\n"
    "  aetherdiag emulator serve --port 0\n\n"
    "  aetherdiag emulator serve --port 1884 --strategy least_inflight\n\n"
    "  aetherdiag emulator serve --fault share-fanout --fault redeliver",
)
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless told)."),
    port: int = typer.Option(1883, help="TCP port; 0 picks a free one.", min=0, max=65535),
    strategy: str = typer.Option(
        "round_robin", "--strategy", "-s",
        help=f"How a share group picks a member. {_STRATEGY_HELP}.",
    ),
    group_strategy: list[str] = typer.Option(
        [], "--group-strategy", help="Per-group strategy, GROUP=STRATEGY (repeatable)."
    ),
    fault: list[str] = typer.Option(
        [], "--fault", "-f", help=f"Misbehave on purpose (repeatable). {_FAULT_HELP}."
    ),
    seed: int | None = typer.Option(None, help="Seed for the random and sticky strategies."),
) -> None:
    """Serve MQTT 3.1.1 and 5.0 on HOST:PORT until Ctrl-C."""
    try:
        broker = Broker(
            strategy=strategy, group_strategies=parse_group_strategies(group_strategy),
            faults=fault, seed=seed,
        )
    except UnknownName as exc:
        raise Abort(str(exc), ExitCode.USAGE) from None
    try:
        asyncio.run(_serve(broker, host, port))
    except OSError as exc:
        reason = exc.strerror or exc
        raise Abort(f"cannot listen on {host}:{port}: {reason}", ExitCode.USAGE) from None


async def _serve(broker: Broker, host: str, port: int) -> None:
    server = EmulatorServer(broker)
    bound_host, bound_port = await server.start(host, port)
    faults = ",".join(sorted(broker.faults)) or "none"
    print(
        f"aetherdiag emulator listening on mqtt://{bound_host}:{bound_port} "
        f"(strategy {broker.strategy}, faults {faults}); Ctrl-C stops it",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    s = broker.stats
    print(
        f"stopped: {s.messages_in} messages in, {s.deliveries} deliveries, "
        f"{s.total_dropped} dropped",
        file=sys.stderr, flush=True,
    )
