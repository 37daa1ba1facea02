"""Vision: the camera sampled at a fixed rate while a conversation is active, sent as JPEG.

    source.py    Frame, the FrameSource protocol, CameraError; SyntheticSource (a moving test
                 card with its frame number drawn in) and read_number() to read it back
    picamera.py  Picamera2Source: the Pi camera or a USB webcam through picamera2 (lazy import)
    pacer.py     Pacer: ticks at a fixed rate, without drift and without bursts
    jpeg.py      encode(): scale down to max_side, JPEG with simplejpeg
    streamer.py  VisionStreamer: pacer -> newest frame -> JPEG -> send, with fault handling

Nothing here imports picamera2 or simplejpeg at import time (numpy only).
"""

from talkie.vision.jpeg import MIME_TYPE, encode
from talkie.vision.pacer import FPS_DEFAULT, FPS_MAX, FPS_MIN, Pacer
from talkie.vision.picamera import Picamera2Source
from talkie.vision.source import CameraError, Frame, FrameSource, SyntheticSource, read_number
from talkie.vision.streamer import VisionStreamer

__all__ = [
    "CameraError",
    "Frame",
    "FrameSource",
    "SyntheticSource",
    "read_number",
    "Picamera2Source",
    "Pacer",
    "FPS_MIN",
    "FPS_MAX",
    "FPS_DEFAULT",
    "encode",
    "MIME_TYPE",
    "VisionStreamer",
]
