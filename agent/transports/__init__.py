"""Byte transports to a docked camera (serial, USB) and their hot-plug discovery."""
