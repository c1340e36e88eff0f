"""relayer.bus: the notice schemas, the topic scheme, and the in-process bus.

What is protected: both notice kinds survive the wire and the in-process bus unchanged; a
payload that is not a notice of ours (garbage, another version, too large, on another origin's
topic) is dropped with a ``bus.payload_dropped`` line naming the reason and never raises into a
subscriber; fan-out and shared-subscription groups mean what they mean on MQTT (every plain
subscription gets each notice, each group exactly one of its members, a member that leaves is
out at once); a full backlog drops and says so once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import msgspec
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from relayer.bus import (
    MAX_PAYLOAD_BYTES,
    AttestationNotice,
    BusUnavailableError,
    MemoryBus,
    ObservationNotice,
    PayloadError,
    PayloadTooLargeError,
    Topics,
    decode_notice,
    encode_notice,
)
from relayer.bus.protocol import Bus, Subscription
from relayer.checkpoints import Attestation
from relayer.plugin import Observation

ORIGIN = 1000
OTHER_ORIGIN = 2000


def observation(index: int, origin: int = ORIGIN) -> ObservationNotice:
    return ObservationNotice(
        origin_domain=origin,
        origin_chain="chain-a",
        message_id=index.to_bytes(32, "big"),
        block_number=100 + index,
        block_hash=bytes([index % 256]) * 32,
        message=b"\x03" + index.to_bytes(4, "big") + b"body",
        evidence=b"receipt-proof-%d" % index,
        block_evidence=b"header",
    )


def attestation(index: int, origin: int = ORIGIN) -> AttestationNotice:
    return AttestationNotice(
        origin_domain=origin,
        destination_domain=OTHER_ORIGIN,
        message_id=index.to_bytes(32, "big"),
        origin_block_hash=b"\xbb" * 32,
        signer=b"\x11" * 20,
        signature=b"\x22" * 64 + b"\x1b",
    )


async def take(subscription: Subscription[ObservationNotice], count: int) -> list[int]:
    """The indexes of the next ``count`` observations (fails after 5 s)."""
    async with asyncio.timeout(5):
        return [int.from_bytes((await anext(subscription)).message_id) for _ in range(count)]


# --- payloads --------------------------------------------------------------------------------


def test_both_notice_kinds_survive_the_wire_unchanged() -> None:
    for notice in (observation(7), attestation(7)):
        assert decode_notice(encode_notice(notice)) == notice


def test_notices_convert_to_and_from_the_types_the_core_uses() -> None:
    notice = observation(3)
    obs = notice.to_observation()
    assert isinstance(obs, Observation)
    assert (
        ObservationNotice.from_observation(
            obs, origin_domain=notice.origin_domain, message_id=notice.message_id
        )
        == notice
    )
    signed = attestation(3)
    assert isinstance(signed.to_attestation(), Attestation)
    assert AttestationNotice.from_attestation(signed.to_attestation()) == signed


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "garbage"),
        (b"\xc1not msgpack", "garbage"),
        (msgspec.msgpack.encode([1, 2, 3]), "garbage"),
        (msgspec.msgpack.encode({"no": "format"}), "garbage"),
        (msgspec.msgpack.encode({"format": "bus.observation.v2", "x": 1}), "unsupported_version"),
        (msgspec.msgpack.encode({"format": "bus.attestation.v0"}), "unsupported_version"),
        (msgspec.msgpack.encode({"format": "someone.else.v1"}), "unknown_format"),
        (msgspec.msgpack.encode({"format": "bus.observation.v1"}), "invalid"),
    ],
)
def test_a_payload_that_is_not_a_notice_raises_payload_error_with_its_reason(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(PayloadError) as raised:
        decode_notice(payload)
    assert raised.value.reason == reason


def test_fields_out_of_range_are_invalid() -> None:
    good = msgspec.msgpack.decode(encode_notice(attestation(1)))
    assert decode_notice(msgspec.msgpack.encode(good)) == attestation(1)
    for field, value in [
        ("signature", b"\x00" * 64),  # a 64-byte signature has no recovery id
        ("signer", b"\x00" * 32),
        ("message_id", b"\x00" * 31),
        ("origin_domain", 2**32),
        ("origin_domain", -1),
    ]:
        bad = msgspec.msgpack.encode({**good, field: value})
        with pytest.raises(PayloadError) as raised:
            decode_notice(bad)
        assert raised.value.reason == "invalid", field


def test_size_is_bounded_both_ways() -> None:
    big = msgspec.structs.replace(observation(1), evidence=b"\x00" * MAX_PAYLOAD_BYTES)
    with pytest.raises(PayloadTooLargeError):
        encode_notice(big)
    data = encode_notice(observation(1))
    with pytest.raises(PayloadTooLargeError) as raised:
        decode_notice(data, max_bytes=len(data) - 1)
    assert raised.value.reason == "too_large"
    assert decode_notice(data, max_bytes=len(data)) == observation(1)


def test_a_reader_of_v1_ignores_fields_added_later() -> None:
    fields = {**msgspec.msgpack.decode(encode_notice(attestation(2))), "added_in_a_later_build": 5}
    assert decode_notice(msgspec.msgpack.encode(fields)) == attestation(2)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_decoding_any_bytes_returns_a_notice_or_raises_payload_error(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_notice(data)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["format", "origin_domain", "message_id", "signer", "signature", "block_hash"]
        ),
        st.one_of(
            st.sampled_from(["bus.observation.v1", "bus.attestation.v1", "bus.attestation.v9"]),
            st.integers(min_value=-(2**63), max_value=2**64 - 1),
            st.binary(max_size=70),
            st.text(max_size=10),
            st.none(),
        ),
    )
)
def test_decoding_near_misses_raises_only_payload_error(fields: dict[str, object]) -> None:
    with contextlib.suppress(PayloadError):
        decode_notice(msgspec.msgpack.encode(fields))


# --- topics ----------------------------------------------------------------------------------


def test_topic_scheme() -> None:
    topics = Topics("relayer")
    assert topics.for_notice(observation(1)) == "relayer/v1/1000/observations"
    assert topics.for_notice(attestation(1)) == "relayer/v1/1000/attestations"
    assert topics.filters(ObservationNotice) == ("relayer/v1/+/observations",)
    assert topics.filters(AttestationNotice, [2000, 1000, 1000], group="workers") == (
        "$share/workers/relayer/v1/1000/attestations",
        "$share/workers/relayer/v1/2000/attestations",
    )
    assert topics.parse("relayer/v1/1000/observations") == (ObservationNotice, 1000)
    for other in [
        "relayer/v2/1000/observations",
        "relayer/v1/01000/observations",
        "relayer/v1/4294967296/observations",
        "relayer/v1/1000/observations/x",
        "other/relayer/v1/1000/observations",
        "relayer/v1/1000/blocks",
    ]:
        assert topics.parse(other) is None, other


@pytest.mark.parametrize("prefix", ["", "a/+", "a/#", "$SYS", "a//b", "a/"])
def test_a_prefix_with_wildcards_or_empty_levels_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="topic prefix"):
        Topics(prefix)


@pytest.mark.parametrize("group", ["", "a/b", "a+", "#", "x" * 65])
def test_a_group_that_cannot_name_a_shared_subscription_is_refused(group: str) -> None:
    with pytest.raises(ValueError, match="group"):
        Topics().filters(ObservationNotice, group=group)


def test_empty_origins_is_refused() -> None:
    with pytest.raises(ValueError, match="origins is empty"):
        Topics().filters(ObservationNotice, [])


# --- the in-process bus ----------------------------------------------------------------------


def test_the_memory_bus_is_a_bus() -> None:
    bus: Bus = MemoryBus()
    assert bus.connected


async def test_both_kinds_round_trip_on_the_memory_bus() -> None:
    async with (
        MemoryBus() as bus,
        bus.subscribe(ObservationNotice) as observations,
        bus.subscribe(AttestationNotice, origins=[ORIGIN]) as attestations,
    ):
        await observations.wait_subscribed(timeout=1)
        await bus.publish(observation(1))
        await bus.publish(attestation(1))
        async with asyncio.timeout(5):
            assert await anext(observations) == observation(1)
            assert await anext(attestations) == attestation(1)


async def test_every_plain_subscription_gets_every_notice_of_its_origins() -> None:
    async with (
        MemoryBus() as bus,
        bus.subscribe(ObservationNotice) as everything,
        bus.subscribe(ObservationNotice, origins=[ORIGIN]) as first,
        bus.subscribe(ObservationNotice, origins=[OTHER_ORIGIN]) as second,
    ):
        await bus.publish(observation(1))
        await bus.publish(observation(2, origin=OTHER_ORIGIN))
        assert await take(everything, 2) == [1, 2]
        assert await take(first, 1) == [1]
        assert await take(second, 1) == [2]
        assert first.backlog == second.backlog == 0


async def test_a_shared_group_splits_notices_none_lost_none_duplicated() -> None:
    async with (
        MemoryBus() as bus,
        bus.subscribe(ObservationNotice, group="workers") as one,
        bus.subscribe(ObservationNotice, group="workers") as two,
        bus.subscribe(ObservationNotice) as watcher,
    ):
        for index in range(100):
            await bus.publish(observation(index))
        got_one = await take(one, one.backlog)
        got_two = await take(two, two.backlog)
        assert got_one and got_two
        assert Counter(got_one + got_two) == Counter(range(100))
        # A plain subscription beside the group still gets its own copy of everything.
        assert await take(watcher, 100) == list(range(100))


async def test_a_member_that_leaves_is_out_of_the_group_at_once() -> None:
    async with MemoryBus() as bus, bus.subscribe(ObservationNotice, group="workers") as stays:
        async with bus.subscribe(ObservationNotice, group="workers") as leaves:
            for index in range(10):
                await bus.publish(observation(index))
            assert leaves.backlog == 5
        # Its backlog went with it (as a killed MQTT worker's does); what follows is the
        # remaining member's alone.
        for index in range(10, 30):
            await bus.publish(observation(index))
        got = await take(stays, stays.backlog)
        assert got == [*range(0, 10, 2), *range(10, 30)]


async def test_notices_published_before_subscribing_do_not_arrive() -> None:
    async with MemoryBus() as bus:
        await bus.publish(observation(1))
        async with bus.subscribe(ObservationNotice) as late:
            await bus.publish(observation(2))
            assert await take(late, 1) == [2]


async def test_a_full_backlog_drops_the_newest_and_says_so_once() -> None:
    with capture_logs() as logs:
        async with (
            MemoryBus(max_backlog=3, log=structlog.get_logger()) as bus,
            bus.subscribe(ObservationNotice) as slow,
        ):
            for index in range(10):
                await bus.publish(observation(index))
            assert await take(slow, 3) == [0, 1, 2]
            await bus.publish(observation(10))
            assert await take(slow, 1) == [10]
    assert [(e["event"], e.get("dropped")) for e in logs] == [
        ("bus.backlog_full", None),
        ("bus.backlog_recovered", 7),
    ]


async def test_a_group_deals_past_a_member_whose_backlog_is_full() -> None:
    async with (
        MemoryBus(max_backlog=2) as bus,
        bus.subscribe(ObservationNotice, group="workers") as stuck,
        bus.subscribe(ObservationNotice, group="workers") as busy,
    ):
        for index in range(4):
            await bus.publish(observation(index))
        assert await take(stuck, 2) == [0, 2]
        for index in range(4, 6):
            await bus.publish(observation(index))
        # `busy` is full with 1 and 3; `stuck` takes both.
        assert await take(stuck, 2) == [4, 5]
        assert await take(busy, 2) == [1, 3]


async def test_bad_payloads_are_dropped_with_a_log_line_and_the_subscriber_goes_on() -> None:
    topics = Topics()
    topic = topics.topic(ObservationNotice, ORIGIN)
    with capture_logs() as logs:
        async with (
            MemoryBus(log=structlog.get_logger(), max_payload_bytes=4096) as bus,
            bus.subscribe(ObservationNotice) as subscription,
        ):
            await bus.publish_payload(topic, b"\x00garbage")
            await bus.publish_payload(
                topic, msgspec.msgpack.encode({"format": "bus.observation.v2"})
            )
            await bus.publish_payload(topic, b"\x00" * 4097)
            # A true notice, on another origin's topic, and on the other kind's topic.
            await bus.publish_payload(
                topics.topic(ObservationNotice, OTHER_ORIGIN), encode_notice(observation(1))
            )
            await bus.publish_payload(
                topics.topic(AttestationNotice, ORIGIN), encode_notice(observation(2))
            )
            await bus.publish_payload(topic, encode_notice(observation(3)))
            assert await take(subscription, 1) == [3]
            assert subscription.backlog == 0
    dropped = [e for e in logs if e["event"] == "bus.payload_dropped"]
    assert [e["reason"] for e in dropped] == [
        "garbage",
        "unsupported_version",
        "too_large",
        "wrong_topic",
        "wrong_topic",
    ]
    assert all(e["log_level"] == "warning" and e["topic"] for e in dropped)


async def test_closing_the_bus_ends_every_iteration() -> None:
    bus = MemoryBus()
    async with bus.subscribe(ObservationNotice, group="g") as subscription:
        taken: list[ObservationNotice] = []
        first_taken = asyncio.Event()

        async def consume() -> None:
            async for notice in subscription:
                taken.append(notice)
                first_taken.set()

        consumer = asyncio.create_task(consume())
        await bus.publish(observation(1))
        async with asyncio.timeout(5):
            await first_taken.wait()
            await bus.aclose()
            await consumer
        assert taken == [observation(1)]
    with pytest.raises(BusUnavailableError):
        await bus.publish(observation(2))
