"""worker.py: the AetherMagic worker the README shows (pip install 'aethermagic[mqtt]')."""

import asyncio
import os

from aethermagic import AetherMagic, AetherTask


async def on_perform(task, data):
    await task.complete(True, {"done": data})


async def main() -> None:
    magic = AetherMagic(server=os.environ["MQTT_HOST"], port=int(os.environ["MQTT_PORT"]),
                        union="production")
    await AetherTask("engine", "process-data", "batch1", on_perform=on_perform).idle()
    await magic.main()


asyncio.run(main())
