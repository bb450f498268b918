"""The application's resources by key (aiohttp AppKeys), in one place that every route module may import:
the composition root (warning.web.app) fills them at start-up; route modules only read them."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from warning.broadcast import Broadcaster
from warning.broker import BrokerAddress
from warning.channels.base import Channel
from warning.config import Settings
from warning.deliveries import Deliveries
from warning.directory.store import Directory
from warning.engine import Engine
from warning.evidence import Evidence
from warning.readmodel import ReadModel
from warning.store import Store
from warning.users import Users
from warning.web.health import CHANNEL_CHECKS, Metrics
from warning.web.throttle import Throttle
from warning.web.voice_hooks import VoiceCallbacks

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
BROKER = web.AppKey("broker", BrokerAddress)
DIRECTORY = web.AppKey("directory", Directory)
METRICS = web.AppKey("metrics", Metrics)
BROADCASTER = web.AppKey("broadcaster", Broadcaster)
DELIVERIES = web.AppKey("deliveries", Deliveries)
USERS = web.AppKey("users", Users)
# The same read model and users over the readers' own Redis pool (GET routes of the API).
READ_MODEL = web.AppKey("read_model", ReadModel)
READER_USERS = web.AppKey("reader_users", Users)
TWILIO_TOKEN = web.AppKey("twilio_token", str)
WECHAT_TOKEN = web.AppKey("wechat_token", str)
EVIDENCE = web.AppKey("evidence", Evidence)
VOICE_CALLBACKS = web.AppKey("voice_callbacks", VoiceCallbacks)
ENGINE = web.AppKey("engine", Engine)
BACKGROUND: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("background", set)
CHANNELS = web.AppKey("channels", list)
RUNNING_CHANNELS: web.AppKey[dict[str, Channel]] = web.AppKey("running_channels", dict)
THROTTLE = web.AppKey("throttle", Throttle)

__all__ = [
    "BACKGROUND",
    "BROADCASTER",
    "BROKER",
    "CHANNELS",
    "CHANNEL_CHECKS",
    "DELIVERIES",
    "DIRECTORY",
    "ENGINE",
    "EVIDENCE",
    "METRICS",
    "READER_USERS",
    "READ_MODEL",
    "RUNNING_CHANNELS",
    "SETTINGS",
    "STORE",
    "THROTTLE",
    "TWILIO_TOKEN",
    "USERS",
    "VOICE_CALLBACKS",
    "WECHAT_TOKEN",
]
