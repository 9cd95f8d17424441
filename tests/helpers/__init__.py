"""Machinery shared by the test-suite: real brokers, MQTT observers, network faults, PKI."""

from .mosquitto import Mosquitto, find_mosquitto
from .mqtt import Message, MqttCollector
from .mqtt_proxy import MqttProxy
from .net import free_port, wait_for_port
from .pki import Pki, make_pki
from .tmpfs import tmpfs

__all__ = [
    "Message",
    "Mosquitto",
    "MqttCollector",
    "MqttProxy",
    "Pki",
    "find_mosquitto",
    "free_port",
    "make_pki",
    "tmpfs",
    "wait_for_port",
]
