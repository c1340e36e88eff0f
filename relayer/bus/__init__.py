"""The bus: notices between roles (watchers, workers, attesters), in one process or many.

``Bus`` is the interface; ``MemoryBus`` the embedded default (one process), ``MqttBus`` an MQTT
v5 broker (several processes or machines), configured by ``MqttSettings``. The bus carries
notices that make work happen sooner; the ledger holds the work, and every consumer re-verifies
what it takes off the bus. See ``relayer.bus.protocol`` for the semantics and
``relayer.bus.mqtt`` for the broker session settings and why.
"""

from relayer.bus.errors import (
    BrokerRefusedError,
    BusError,
    BusUnavailableError,
    DropReason,
    PayloadError,
    PayloadTooLargeError,
)
from relayer.bus.memory import MemoryBus
from relayer.bus.mqtt import MqttBus, MqttSettings, MqttTls
from relayer.bus.payloads import (
    MAX_PAYLOAD_BYTES,
    AttestationBatchNotice,
    AttestationNotice,
    AttestationRequest,
    Notice,
    ObservationNotice,
    decode_notice,
    encode_notice,
)
from relayer.bus.protocol import Bus, Subscription
from relayer.bus.topics import Topics

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "AttestationBatchNotice",
    "AttestationNotice",
    "AttestationRequest",
    "BrokerRefusedError",
    "Bus",
    "BusError",
    "BusUnavailableError",
    "DropReason",
    "MemoryBus",
    "MqttBus",
    "MqttSettings",
    "MqttTls",
    "Notice",
    "ObservationNotice",
    "PayloadError",
    "PayloadTooLargeError",
    "Subscription",
    "Topics",
    "decode_notice",
    "encode_notice",
]
