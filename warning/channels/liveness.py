"""Loudspeakers' last reported status in Redis: written by the speaker channel, read by the views.

Apart from `speaker.py` so that reading it (every `warning status`, every reach view) does not load the
MQTT client.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from warning.store import Store


def status_key(store: Store) -> str:
    return store.keys.key("speaker", "status")


async def speaker_status(store: Store, device_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The last reported status of each device that has reported one: `{online, ts, volume, fault, seen}`.

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached.
    """
    if not device_ids:
        return {}
    values = await store.redis.hmget(status_key(store), list(device_ids))
    return {device: json.loads(raw) for device, raw in zip(device_ids, values, strict=True) if raw}
