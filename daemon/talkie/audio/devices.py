"""Audio device lookup over PortAudio (sounddevice, imported lazily)."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("input", "output")


class AudioError(Exception):
    """An audio problem with a user-facing message (device missing, cannot open, ...)."""


@dataclass(frozen=True)
class DeviceInfo:
    """A resolved PortAudio device: its index (None = PortAudio default), name and default rate."""

    index: int | None
    name: str
    default_rate: float


def import_sounddevice():
    """Import sounddevice, turning a missing PortAudio library into an AudioError."""
    try:
        import sounddevice
    except OSError as exc:  # "PortAudio library not found"
        raise AudioError(f"cannot load PortAudio ({exc}); install libportaudio2") from exc
    return sounddevice


def _channels_key(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    return "max_input_channels" if kind == "input" else "max_output_channels"


def _names(devices: list[dict], key: str) -> str:
    names = [repr(d["name"]) for d in devices if d[key] > 0]
    return ", ".join(names) if names else "(none)"


def find_device(spec: str | int, kind: str) -> DeviceInfo:
    """Resolve a configured device for ``kind`` ("input" or "output").

    ``""`` is PortAudio's default device of that kind; a str is a case-insensitive substring of a
    device name (first device with channels of that kind wins); an int is a PortAudio index.
    Raises :class:`AudioError` with the available device names when nothing matches.
    """
    key = _channels_key(kind)
    setting = f"[audio] {kind}_device"
    sd = import_sounddevice()
    try:
        devices = [dict(d) for d in sd.query_devices()]
    except Exception as exc:  # PortAudioError
        raise AudioError(f"cannot list audio devices: {exc}") from exc

    if isinstance(spec, bool):
        raise AudioError(f"{setting}: expected a name or an index, got {spec!r}")
    if isinstance(spec, int):
        if not 0 <= spec < len(devices):
            raise AudioError(
                f"no {kind} device with index {spec}; set {setting} to one of: "
                f"{_names(devices, key)}"
            )
        dev = devices[spec]
        if dev[key] <= 0:
            raise AudioError(
                f"device {spec} ({dev['name']!r}) has no {kind} channels; set {setting} to one "
                f"of: {_names(devices, key)}"
            )
        return DeviceInfo(spec, str(dev["name"]), float(dev["default_samplerate"]))

    if not isinstance(spec, str):
        raise AudioError(f"{setting}: expected a name or an index, got {spec!r}")

    if spec == "":
        try:
            index = sd.default.device[0 if kind == "input" else 1]
            if index is None or int(index) < 0:
                raise ValueError("no default")
            dev = dict(sd.query_devices(int(index)))
        except Exception as exc:
            raise AudioError(
                f"no default {kind} device; set {setting} to one of: {_names(devices, key)}"
            ) from exc
        if dev[key] <= 0:
            raise AudioError(
                f"no default {kind} device; set {setting} to one of: {_names(devices, key)}"
            )
        return DeviceInfo(int(index), str(dev["name"]), float(dev["default_samplerate"]))

    wanted = spec.casefold()
    for i, dev in enumerate(devices):
        if dev[key] > 0 and wanted in str(dev["name"]).casefold():
            return DeviceInfo(i, str(dev["name"]), float(dev["default_samplerate"]))
    raise AudioError(
        f"no {kind} device matches {spec!r}; set {setting} to one of: {_names(devices, key)}"
    )


def release_alsa_plugins() -> bool:
    """Unload the ALSA plugins that only PortAudio's device scan needed; False if no ALSA.

    Scanning, PortAudio opens every PCM that ALSA's configuration defines, and ALSA keeps each
    plugin's library loaded (with whatever it links: the a52 encoder's libavcodec and its codecs,
    JACK's client library, ...: 11 MB resident with Debian's libasound2-plugins) and the parsed
    configuration. ``snd_config_update_free_global`` drops both: a plugin library that no open
    stream uses is unloaded (ALSA counts the users of each), and the next open reads the
    configuration again. PortAudio's device list and the open streams are not touched. A process
    without ALSA loaded (another platform, PortAudio not imported) is left alone."""
    import ctypes
    import os

    try:
        asound = ctypes.CDLL("libasound.so.2", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except (OSError, AttributeError):  # not loaded, or no RTLD_NOLOAD on this platform
        return False
    asound.snd_config_update_free_global()
    return True
