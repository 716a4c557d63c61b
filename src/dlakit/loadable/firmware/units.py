"""The six processors' programming, indexed by firmware op type (DLA_OP_BDMA .. DLA_OP_RUBIK)."""

from dlakit.loadable.firmware.bdma import Bdma
from dlakit.loadable.firmware.cdp import Cdp
from dlakit.loadable.firmware.conv import Conv
from dlakit.loadable.firmware.engine import Unit
from dlakit.loadable.firmware.pdp import Pdp
from dlakit.loadable.firmware.rubik import Rubik
from dlakit.loadable.firmware.sdp import Sdp

UNITS: tuple[Unit, ...] = (Bdma(), Conv(), Sdp(), Pdp(), Cdp(), Rubik())
