"""The subscription index's compiled wildcard matching agrees with ``topics.matches``.

The index files plain filters under their text and matches wildcard filters with compiled
patterns (plus a per-topic cache past a number of filters); whatever it does, the entries it
returns for a topic must be exactly the filters ``topics.matches`` accepts, oldest first.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aetherdiag.emulator.routing import SubscriptionIndex
from aetherdiag.emulator.session import Subscription
from aetherdiag.emulator.sharing import RoundRobin
from aetherdiag.emulator.topics import matches

LEVELS = st.sampled_from(["a", "b", "", "$sys", "x.y", "(", "*"])
FILTER_LEVELS = st.sampled_from(["a", "b", "", "$sys", "x.y", "(", "*", "+"])


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FILTER_LEVELS, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


topics = st.lists(LEVELS, min_size=1, max_size=5).map("/".join)


def sub(client: str, topic_filter: str) -> Subscription:
    return Subscription(client_id=client, topic_filter=topic_filter,
                        share_name=None, qos=0)


@settings(max_examples=300, deadline=None)
@given(filters=st.lists(topic_filters(), min_size=1, max_size=30, unique=True),
       removed=st.sets(st.integers(min_value=0, max_value=29)),
       probe=st.lists(topics, min_size=1, max_size=10))
def test_index_match_equals_matches(filters: list[str], removed: set[int],
                                    probe: list[str]) -> None:
    index = SubscriptionIndex(lambda _name: RoundRobin())
    for i, f in enumerate(filters):
        index.add(sub(f"c{i}", f))
    kept = [f for i, f in enumerate(filters) if i not in removed]
    for i, f in enumerate(filters):
        if i in removed:
            index.remove(sub(f"c{i}", f))
    for topic in probe + kept[:3]:
        if "+" in topic or "#" in topic:
            continue
        for _ in range(2):  # the second lookup may come from the cache
            got = [next(iter(e.plain.values())).topic_filter for e in index.match(topic)]
            assert got == [f for f in kept if matches(f, topic)], topic
