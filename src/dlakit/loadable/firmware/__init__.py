"""The open KMD firmware, modelled: a loadable's network, operation and surface descriptors
turned into register writes on the simulated NVDLA (nvdla/sw ``kmd/firmware``)."""

from dlakit.loadable.firmware.engine import Firmware, FirmwareConfig, FirmwareError

__all__ = ["Firmware", "FirmwareConfig", "FirmwareError"]
