"""Sans-IO MQTT 3.1.1 and 5.0 packet codec.

How this works: packets are frozen, keyword-only dataclasses (``packets``).
``Decoder.feed(data)`` takes bytes as they arrive from a socket and returns the complete packets
found so far; partial frames stay buffered. ``encoding.encode(packet, version)``
turns a packet back into bytes. The protocol version matters for both directions (v5 adds
reason codes and properties); a decoder learns it from the CONNECT packet it decodes, or is
given it. The PUBLISH and acknowledgement packets every message brings are decoded straight
from the received bytes; anything unusual takes the general path, which gives the exact error.

What may live here: byte layouts from the specifications and nothing else. No sockets, no
asyncio, no broker state. Malformed input raises ``MalformedPacket`` carrying the v5 reason
code the server should answer with (0x81 malformed, 0x82 protocol error, 0x95 too large).
"""

from __future__ import annotations

import struct
from typing import Any

from . import packets as pk
from .properties import WILL
from .properties import check as check_properties

# ---------------------------------------------------------------------------------------------
# Primitive readers


class _Reader:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def remaining(self) -> int:
        return self.end - self.pos

    def byte(self) -> int:
        if self.pos >= self.end:
            raise pk.MalformedPacket("packet ends early")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def u16(self) -> int:
        if self.pos + 2 > self.end:
            raise pk.MalformedPacket("packet ends early")
        v: int = (self.buf[self.pos] << 8) | self.buf[self.pos + 1]
        self.pos += 2
        return v

    def u32(self) -> int:
        if self.pos + 4 > self.end:
            raise pk.MalformedPacket("packet ends early")
        v: int = struct.unpack_from(">I", self.buf, self.pos)[0]
        self.pos += 4
        return v

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise pk.MalformedPacket("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        n = self.u16()
        if self.pos + n > self.end:
            raise pk.MalformedPacket("string or binary field runs past the packet")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(v)

    def string(self) -> str:
        raw = self.binary()
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise pk.MalformedPacket("invalid UTF-8 in a string field") from None
        if "\x00" in s:
            raise pk.MalformedPacket("U+0000 in a string field")
        # Surrogates cannot survive utf-8 decoding, so only the NUL check is needed here.
        return s

    def rest(self) -> bytes:
        v = bytes(self.buf[self.pos : self.end])
        self.pos = self.end
        return v

    def properties(self, packet_type: int) -> pk.Properties:
        """The properties of a packet of ``packet_type`` (``properties.WILL``: a will's)."""
        length = self.varint()
        end = self.pos + length
        if end > self.end:
            raise pk.MalformedPacket("properties run past the packet")
        props: pk.Properties = {}
        while self.pos < end:
            ident = self.varint()
            kind = pk.PROPERTY_TYPES.get(ident)
            if kind is None:
                raise pk.MalformedPacket(f"unknown property 0x{ident:02X}")
            value: Any
            if kind == pk._BYTE:
                value = self.byte()
            elif kind == pk._U16:
                value = self.u16()
            elif kind == pk._U32:
                value = self.u32()
            elif kind == pk._VARINT:
                value = self.varint()
            elif kind == pk._STR:
                value = self.string()
            elif kind == pk._BIN:
                value = self.binary()
            else:
                value = (self.string(), self.string())
            if ident in pk.REPEATABLE:
                props[ident] = (*props.get(ident, ()), value)
            elif ident in props:
                raise pk.MalformedPacket(
                    f"property 0x{ident:02X} given twice", pk.RC_PROTOCOL_ERROR
                )
            else:
                props[ident] = value
        if self.pos != end:
            raise pk.MalformedPacket("properties length does not match their content")
        if props:
            check_properties(packet_type, props)
        return props


# ---------------------------------------------------------------------------------------------
# Decoding

_ACK_CLASSES: dict[int, type[pk.PubAck | pk.PubRec | pk.PubRel | pk.PubComp]] = {
    pk.PUBACK: pk.PubAck, pk.PUBREC: pk.PubRec, pk.PUBREL: pk.PubRel, pk.PUBCOMP: pk.PubComp,
}
# First bytes of acknowledgements (valid flags) that ``Decoder.feed`` builds directly when
# their remaining length is 2: packet id only, reason code 0 and no properties in v5 too.
_SHORT_ACKS: dict[int, type[pk.PubAck | pk.PubRec | pk.PubRel | pk.PubComp]] = {
    0x40: pk.PubAck, 0x50: pk.PubRec, 0x62: pk.PubRel, 0x70: pk.PubComp,
}


class Decoder:
    """Incremental decoder for one connection.

    ``version`` is the protocol level; a server-side decoder starts at ``None`` and learns it
    from CONNECT. ``max_packet_size`` bounds the memory one peer can make us hold.
    """

    def __init__(
        self, version: int | None = None, max_packet_size: int = pk.DEFAULT_MAX_PACKET_SIZE
    ) -> None:
        self.version = version
        self.max_packet_size = max_packet_size
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[pk.Packet]:
        """Add received bytes; return every complete packet now available, in order."""
        buf = self._buf
        if buf:
            buf += data
            data = bytes(buf)
        elif type(data) is not bytes:
            data = bytes(data)
        out: list[pk.Packet] = []
        pos = 0
        n = len(data)
        try:
            if self.version is None and n and data[0] >> 4 != pk.CONNECT:
                # Refuse at the first byte, without waiting for the rest of a bogus packet.
                raise pk.MalformedPacket("first packet is not CONNECT", pk.RC_PROTOCOL_ERROR)
            while n - pos >= 2:
                # Fixed header: type/flags byte, then the remaining length (1-4 bytes).
                length = data[pos + 1]
                i = pos + 2
                if length & 0x80:  # more than one length byte
                    length = 0
                    i = pos + 1
                    for shift in (0, 7, 14, 21):
                        if i >= n:
                            length = -1
                            break
                        b = data[i]
                        i += 1
                        length |= (b & 0x7F) << shift
                        if not b & 0x80:
                            break
                    else:
                        raise pk.MalformedPacket("remaining length longer than 4 bytes")
                    if length < 0:
                        break
                if i - pos + length > self.max_packet_size:
                    raise pk.MalformedPacket(
                        "packet larger than the maximum size", pk.RC_PACKET_TOO_LARGE
                    )
                end = i + length
                if end > n:
                    break
                first = data[pos]
                packet: pk.Packet | None = None
                if self.version is not None:  # after CONNECT: the common packets, directly
                    if first >> 4 == pk.PUBLISH:
                        packet = self._publish_fast(first, data, i, end)
                    elif length == 2 and first in _SHORT_ACKS:
                        packet = pk.new_ack(_SHORT_ACKS[first], (data[i] << 8) | data[i + 1], 0, {})
                if packet is None:
                    packet = self._decode(first, data[i:end])
                out.append(packet)
                pos = end
        except pk.MalformedPacket as exc:
            exc.packets = out
            if not buf:  # keep what was fed, as a decoder that failed midway always did
                buf += data
            raise
        if buf:
            if pos:
                del buf[:pos]
        elif pos < n:
            buf += data[pos:]
        return out

    def _publish_fast(self, first: int, data: bytes, i: int, end: int) -> pk.Publish | None:
        """A well-formed PUBLISH without properties, decoded from ``data[i:end]`` in place.

        None when anything is unusual (bad flags, short fields, invalid UTF-8, v5 properties):
        ``_decode`` then gives the packet or the exact error.
        """
        qos = (first >> 1) & 0x03
        if qos == 3 or (first & 0x08 and not qos) or i + 2 > end:
            return None
        t = i + 2 + ((data[i] << 8) | data[i + 1])
        if t > end:
            return None
        try:
            topic = data[i + 2 : t].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if "\x00" in topic:
            return None
        pid = None
        if qos:
            if t + 2 > end:
                return None
            pid = (data[t] << 8) | data[t + 1]
            if not pid:
                return None
            t += 2
        if self.version == pk.MQTT_5:
            if t >= end or data[t]:
                return None  # properties: the general path reads them
            t += 1
        return pk.new_publish(
            topic, data[t:end], qos, bool(first & 0x01), bool(first & 0x08), pid, {}
        )

    def buffered(self) -> int:
        return len(self._buf)

    def _decode(self, first: int, body: bytes) -> pk.Packet:
        ptype = first >> 4
        flags = first & 0x0F
        r = _Reader(body, 0, len(body))
        if self.version is None and ptype != pk.CONNECT:
            raise pk.MalformedPacket("first packet is not CONNECT", pk.RC_PROTOCOL_ERROR)
        if ptype == pk.PUBLISH:
            return self._publish(flags, r)
        if ptype in (pk.PUBREL, pk.SUBSCRIBE, pk.UNSUBSCRIBE):
            if flags != 0x02:
                raise pk.MalformedPacket("reserved fixed-header flags must be 0010")
        elif flags != 0:
            raise pk.MalformedPacket("reserved fixed-header flags must be 0000")
        v5 = self.version == pk.MQTT_5
        packet: pk.Packet
        if ptype == pk.CONNECT:
            packet = self._connect(r)
        elif ptype in (pk.PUBACK, pk.PUBREC, pk.PUBREL, pk.PUBCOMP):
            pid = r.u16()
            rc = 0
            props: pk.Properties = pk._EMPTY
            if v5 and r.remaining():
                rc = r.byte()
                if r.remaining():
                    props = r.properties(ptype)
            cls = _ACK_CLASSES[ptype]
            packet = cls(packet_id=pid, reason_code=rc, properties=dict(props))
        elif ptype == pk.SUBSCRIBE:
            packet = self._subscribe(r, v5)
        elif ptype == pk.UNSUBSCRIBE:
            pid = r.u16()
            if pid == 0:
                raise pk.MalformedPacket("packet identifier 0")
            props = r.properties(ptype) if v5 else {}
            filters: list[str] = []
            while r.remaining():
                filters.append(r.string())
            if not filters:
                raise pk.MalformedPacket("UNSUBSCRIBE with no topic filters",
                                         pk.RC_PROTOCOL_ERROR)
            packet = pk.Unsubscribe(packet_id=pid, topic_filters=tuple(filters), properties=props)
        elif ptype == pk.PINGREQ:
            packet = pk.PingReq()
        elif ptype == pk.PINGRESP:
            packet = pk.PingResp()
        elif ptype == pk.DISCONNECT:
            rc = 0
            props = {}
            if v5 and r.remaining():
                rc = r.byte()
                if r.remaining():
                    props = r.properties(ptype)
            packet = pk.Disconnect(reason_code=rc, properties=props)
        elif ptype == pk.CONNACK:
            ack_flags = r.byte()
            rc = r.byte()
            props = r.properties(ptype) if v5 and r.remaining() else {}
            packet = pk.ConnAck(session_present=bool(ack_flags & 1), reason_code=rc,
                                properties=props)
        elif ptype == pk.SUBACK:
            pid = r.u16()
            props = r.properties(ptype) if v5 else {}
            packet = pk.SubAck(packet_id=pid, reason_codes=tuple(r.rest()), properties=props)
        elif ptype == pk.UNSUBACK:
            pid = r.u16()
            props = r.properties(ptype) if v5 and r.remaining() else {}
            packet = pk.UnsubAck(packet_id=pid, reason_codes=tuple(r.rest()), properties=props)
        elif ptype == pk.AUTH and v5:
            rc = r.byte() if r.remaining() else 0
            props = r.properties(ptype) if r.remaining() else {}
            packet = pk.Auth(reason_code=rc, properties=props)
        else:
            raise pk.MalformedPacket(f"packet type {ptype} is not valid here", pk.RC_PROTOCOL_ERROR)
        if r.remaining():
            raise pk.MalformedPacket("trailing bytes after the packet")
        return packet

    def _publish(self, flags: int, r: _Reader) -> pk.Publish:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise pk.MalformedPacket("PUBLISH with QoS 3")
        dup = bool(flags & 0x08)
        if dup and qos == 0:
            raise pk.MalformedPacket("PUBLISH with DUP set at QoS 0")
        topic = r.string()
        pid = None
        if qos:
            pid = r.u16()
            if pid == 0:
                raise pk.MalformedPacket("packet identifier 0")
        props = r.properties(pk.PUBLISH) if self.version == pk.MQTT_5 else {}
        return pk.Publish(
            topic=topic, payload=r.rest(), qos=qos, retain=bool(flags & 0x01), dup=dup,
            packet_id=pid, properties=props,
        )

    def _connect(self, r: _Reader) -> pk.Connect:
        if self.version is not None:
            raise pk.MalformedPacket("second CONNECT on one connection", pk.RC_PROTOCOL_ERROR)
        name = r.string()
        level = r.byte()
        if (name, level) not in (("MQTT", pk.MQTT_3_1_1), ("MQTT", pk.MQTT_5),
                                 ("MQIsdp", pk.MQTT_3_1)):
            raise pk.UnsupportedVersion(name, level)
        self.version = level
        cflags = r.byte()
        if cflags & 0x01:
            raise pk.MalformedPacket("CONNECT reserved flag set")
        keepalive = r.u16()
        props = r.properties(pk.CONNECT) if level == pk.MQTT_5 else {}
        client_id = r.string()
        will = None
        will_flag = bool(cflags & 0x04)
        will_qos = (cflags >> 3) & 0x03
        will_retain = bool(cflags & 0x20)
        if will_flag:
            if will_qos == 3:
                raise pk.MalformedPacket("will QoS 3")
            will_props = r.properties(WILL) if level == pk.MQTT_5 else {}
            will_topic = r.string()
            will_payload = r.binary()
            will = pk.Will(
                topic=will_topic, payload=will_payload, qos=will_qos, retain=will_retain,
                properties=will_props,
            )
        elif will_qos or will_retain:
            raise pk.MalformedPacket("will QoS or retain set without the will flag")
        username = r.string() if cflags & 0x80 else None
        password = r.binary() if cflags & 0x40 else None
        if password is not None and username is None and level != pk.MQTT_5:
            raise pk.MalformedPacket("password without user name")
        return pk.Connect(
            protocol_level=level, protocol_name=name, client_id=client_id,
            clean_start=bool(cflags & 0x02), keepalive=keepalive, will=will,
            username=username, password=password, properties=props,
        )

    def _subscribe(self, r: _Reader, v5: bool) -> pk.Subscribe:
        pid = r.u16()
        if pid == 0:
            raise pk.MalformedPacket("packet identifier 0")
        props = r.properties(pk.SUBSCRIBE) if v5 else {}
        if len(props.get(pk.PROP_SUBSCRIPTION_ID, ())) > 1:
            raise pk.MalformedPacket("Subscription Identifier given twice", pk.RC_PROTOCOL_ERROR)
        subs: list[pk.SubscriptionRequest] = []
        while r.remaining():
            topic_filter = r.string()
            opts = r.byte()
            if v5:
                if opts & 0xC0:
                    raise pk.MalformedPacket("reserved subscription option bits set")
                rh = (opts >> 4) & 0x03
                if rh == 3 or opts & 0x03 == 3:
                    raise pk.MalformedPacket("invalid subscription options")
                subs.append(pk.SubscriptionRequest(
                    topic_filter=topic_filter, qos=opts & 0x03, no_local=bool(opts & 0x04),
                    retain_as_published=bool(opts & 0x08), retain_handling=rh,
                ))
            else:
                if opts & 0xFC or opts == 3:
                    raise pk.MalformedPacket("invalid requested QoS byte")
                subs.append(pk.SubscriptionRequest(topic_filter=topic_filter, qos=opts))
        if not subs:
            raise pk.MalformedPacket("SUBSCRIBE with no topic filters", pk.RC_PROTOCOL_ERROR)
        return pk.Subscribe(packet_id=pid, subscriptions=tuple(subs), properties=props)
