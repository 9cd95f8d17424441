"""Reference body-worn camera emulator (``bwc-camsim``), built on the CAMERA role.

The data path, top to bottom: a front end (``pty``, or ``usb_bus`` on a simulated USB bus)
pumps bytes between a line and a :class:`~camsim.session.CameraSession`, which decodes requests
with a ``firmware_protocol.Connection`` and answers them from the :class:`~camsim.model.Camera`
model (recordings, clock, event log, persistent state). Line faults (``line``) sit between the
session and the front end; ``pump.ReplyQueue`` is the part both front ends share. The host side
of the USB bus is a pyusb backend, ``usb_backend``.
"""

__all__: list[str] = []
