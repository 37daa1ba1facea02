"""Acoustic echo cancellation: take the speaker's own sound out of the microphone signal.

:class:`SpeexEcho` drives libspeexdsp (Debian's and Raspberry Pi OS's ``libspeexdsp1``) through
ctypes: its MDF adaptive filter (``speex_echo_cancellation``) followed by its preprocessor with the
echo state attached, which suppresses the residual echo the linear filter leaves. Chosen over the
WebRTC audio-processing module available as a wheel by measurement (``tests/bench/barge_in.py
--compare`` and the README's barge-in section): less echo reduction (23.5 against 29.9 dB) but the
same zero false barge-ins behind the speech gate, less CPU, 21 MB less memory, and a system library
instead of a 28 MB one.

Both signals are s16 mono at the same rate, processed in frames of ``frame`` samples (10 ms). The
reference is what the speaker played, aligned so that it leads its echo in the microphone by at
most ``filter_ms`` (see :mod:`talkie.audio.reference`).

All buffers are allocated once; :meth:`process` writes into a preallocated output frame.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np

from talkie.audio.devices import AudioError

_SET_SAMPLING_RATE = 24
_PP_SET_DENOISE = 0
_PP_SET_NOISE_SUPPRESS = 18
_PP_SET_ECHO_SUPPRESS = 20
_PP_SET_ECHO_SUPPRESS_ACTIVE = 22
_PP_SET_ECHO_STATE = 24


@functools.cache
def _speexdsp() -> ctypes.CDLL:
    """libspeexdsp, loaded once (an AudioError naming the package if it is missing)."""
    name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise AudioError(
            "echo cancellation needs libspeexdsp: install the libspeexdsp1 package, "
            'or set [audio] echo = "half_duplex"'
        ) from exc
    vp, i, i16p = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int16)
    lib.speex_echo_state_init.argtypes, lib.speex_echo_state_init.restype = [i, i], vp
    lib.speex_echo_ctl.argtypes, lib.speex_echo_ctl.restype = [vp, i, vp], i
    lib.speex_echo_cancellation.argtypes, lib.speex_echo_cancellation.restype = (
        [vp, i16p, i16p, i16p],
        None,
    )
    lib.speex_echo_state_reset.argtypes, lib.speex_echo_state_reset.restype = [vp], None
    lib.speex_echo_state_destroy.argtypes, lib.speex_echo_state_destroy.restype = [vp], None
    lib.speex_preprocess_state_init.argtypes, lib.speex_preprocess_state_init.restype = [i, i], vp
    lib.speex_preprocess_ctl.argtypes, lib.speex_preprocess_ctl.restype = [vp, i, vp], i
    lib.speex_preprocess_run.argtypes, lib.speex_preprocess_run.restype = [vp, i16p], i
    lib.speex_preprocess_state_destroy.argtypes, lib.speex_preprocess_state_destroy.restype = (
        [vp],
        None,
    )
    return lib


class SpeexEcho:
    """Echo canceller + residual echo suppressor for one microphone and one speaker.

    ``filter_ms``: the echo tail the adaptive filter models (alignment slack + room delay + reverb).
    ``suppress_db`` / ``suppress_active_db``: how far residual echo is pushed down when only the
    speaker talks, and while the user talks too (double talk: less, so the user stays audible).
    ``noise_suppress_db``: how far the room's noise is pushed down (0: not at all). The
    preprocessor applies its gains only with its denoiser on, the echo suppressor's included, so
    the denoiser is on, at 0 dB: the residual echo is suppressed, the noise left as it is.
    """

    def __init__(
        self,
        rate: int = 16000,
        frame: int = 160,
        filter_ms: int = 200,
        *,
        suppress_db: int = -40,
        suppress_active_db: int = -15,
        noise_suppress_db: int = 0,
    ) -> None:
        lib = _speexdsp()
        self.rate, self.frame = int(rate), int(frame)
        self.filter_taps = self.rate * int(filter_ms) // 1000
        self._lib = lib
        self._echo = lib.speex_echo_state_init(self.frame, self.filter_taps)
        self._pp = lib.speex_preprocess_state_init(self.frame, self.rate)
        if not self._echo or not self._pp:
            self.close()
            raise AudioError("libspeexdsp could not create an echo canceller")
        value = ctypes.c_int(self.rate)
        lib.speex_echo_ctl(self._echo, _SET_SAMPLING_RATE, ctypes.byref(value))
        lib.speex_preprocess_ctl(self._pp, _PP_SET_ECHO_STATE, self._echo)
        for request, v in (
            (_PP_SET_DENOISE, 1),
            (_PP_SET_NOISE_SUPPRESS, int(noise_suppress_db)),
            (_PP_SET_ECHO_SUPPRESS, int(suppress_db)),
            (_PP_SET_ECHO_SUPPRESS_ACTIVE, int(suppress_active_db)),
        ):
            value = ctypes.c_int(v)
            lib.speex_preprocess_ctl(self._pp, request, ctypes.byref(value))
        self._mic = np.zeros(self.frame, dtype=np.int16)
        self._ref = np.zeros(self.frame, dtype=np.int16)
        self._out = np.zeros(self.frame, dtype=np.int16)
        #: The last frame's linear canceller output, before the residual echo suppressor.
        self.linear = np.zeros(self.frame, dtype=np.int16)
        i16p = ctypes.POINTER(ctypes.c_int16)
        self._mic_p = self._mic.ctypes.data_as(i16p)
        self._ref_p = self._ref.ctypes.data_as(i16p)
        self._out_p = self._out.ctypes.data_as(i16p)

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """One frame: ``mic`` minus the echo of ``ref``. Returns a view of an internal buffer
        (valid until the next call)."""
        self._mic[:] = mic
        self._ref[:] = ref
        self._lib.speex_echo_cancellation(self._echo, self._mic_p, self._ref_p, self._out_p)
        self.linear[:] = self._out
        self._lib.speex_preprocess_run(self._pp, self._out_p)
        return self._out

    def close(self) -> None:
        if getattr(self, "_pp", None):
            self._lib.speex_preprocess_state_destroy(self._pp)
            self._pp = None
        if getattr(self, "_echo", None):
            self._lib.speex_echo_state_destroy(self._echo)
            self._echo = None

    def __del__(self) -> None:
        self.close()
