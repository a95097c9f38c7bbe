"""Server-to-client topic aliases (MQTT 5.0 3.3.2.3.4), one table per connection.

How this works: with ``Limits.topic_aliases`` on, a v5 client that announced a Topic Alias
Maximum above 0 in its CONNECT gets a ``TopicAliases`` on its connection. The first PUBLISH
to a topic carries the topic and a new alias; later ones carry the alias and an empty topic.
Aliases are handed out in order until the client's maximum is reached; topics seen after that
go out in full. A table lives and dies with its connection (aliases never outlive it, 3.3.2.3.4),
so a resumed session starts a new one. Sans-IO: packets in, packets out.
"""

from __future__ import annotations

from . import packets as pk


class TopicAliases:
    """The aliases this server has set up towards one connection."""

    __slots__ = ("_by_topic", "maximum")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._by_topic: dict[str, int] = {}

    def apply(self, packet: pk.Publish) -> pk.Publish:
        """``packet`` as sent with an alias (a new one, or the topic's existing one)."""
        alias = self._by_topic.get(packet.topic)
        topic = ""
        if alias is None:
            if len(self._by_topic) >= self.maximum:
                return packet
            alias = self._by_topic[packet.topic] = len(self._by_topic) + 1
            topic = packet.topic
        props = {**packet.properties, pk.PROP_TOPIC_ALIAS: alias}
        return pk.new_publish(topic, packet.payload, packet.qos, packet.retain, packet.dup,
                              packet.packet_id, props)
