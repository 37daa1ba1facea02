"""The fakes the tests put in the shell's place, checked against its seams.

Nothing here runs: ``tests/run`` has mypy check this file, so a fake that drifts from the protocol
the shell depends on (:mod:`talkie.shell.ports`) fails the suite, as a real adapter would.
"""

from __future__ import annotations

from talkie.live.link import HandleStore
from talkie.shell import ports
from talkie.shell.factories import Factories
from tests.support import fakes
from tests.support.rig import NumberedMic, VirtualClock


def the_supervisor_rig() -> tuple[Factories, ports.CallLater]:
    """The microphone and the clock the supervisor's tests inject."""
    return Factories(capture=NumberedMic), VirtualClock().call_later


def the_lifecycle_fakes(log: fakes.Log) -> None:
    """Every stand-in of tests/support/fakes.py, each against its seam."""
    panel: ports.Panel = fakes.FakePanel(log, None)
    capture: ports.Capture = fakes.FakeCapture(log)
    playback: ports.Playback = fakes.FakePlayback(log)
    chain: ports.MicChain = fakes.FakeChain()
    link: ports.Link = fakes.FakeLink(log)
    camera: ports.Camera = fakes.FakeCamera(log)
    notifier: ports.Notifier = fakes.FakeNotifier()
    resume: HandleStore = fakes.FakeResume()
    control: ports.ControlServer = fakes.FakeControl(log)
    del panel, capture, playback, chain, link, camera, notifier, resume, control
