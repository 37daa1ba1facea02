"""The settings' data model: frozen dataclasses, one per section of ``talkie.toml``.

They hold *the* defaults (the shipped ``config/talkie.toml`` says the same, a test checks it), and
the settings derived from others as properties. What each key accepts, and the words that
describe it, are :mod:`talkie.config.schema`; nothing here knows about files or line numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The Live API's audio: the microphone's rate (s16le mono) and the model's answer's.
INPUT_RATE = 16000
OUTPUT_RATE = 24000


# ---------------------------------------------------------------- data model
class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable, picklable mapping (used for the LED patterns)."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


@dataclass(frozen=True)
class LedPattern:
    """How the status LED looks in one state (off, solid, blink or pulse)."""

    kind: str
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    brightness: float = 1.0
    on_s: float = 0.5
    off_s: float = 0.5

    @property
    def words(self) -> str:
        """The pattern in a few words, e.g. "dim green" or "red fast blink"."""
        if self.kind == "off":
            return "off"
        color = COLOR_NAMES.get(self.color, "coloured")
        if self.kind == "solid":
            return f"dim {color}" if self.brightness <= 0.2 else color
        if self.kind == "blink" and self.on_s + self.off_s <= 0.3:
            return f"{color} fast blink"
        return f"{color} {self.kind}"


WHITE, GREEN, BLUE = (1.0, 1.0, 1.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
CYAN, YELLOW, RED = (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0)
COLOR_NAMES = {
    WHITE: "white",
    GREEN: "green",
    BLUE: "blue",
    CYAN: "cyan",
    YELLOW: "yellow",
    RED: "red",
}

DEFAULT_PATTERNS = FrozenMap(
    {
        "starting": LedPattern("pulse", WHITE, 1.0, 0.5, 0.5),
        "idle": LedPattern("solid", GREEN, 0.15),
        "connecting": LedPattern("blink", BLUE, 1.0, 0.1, 0.1),
        "listening": LedPattern("solid", BLUE, 1.0),
        "thinking": LedPattern("pulse", CYAN, 1.0, 0.4, 0.4),
        "speaking": LedPattern("solid", WHITE, 0.6),
        "reconnecting": LedPattern("blink", YELLOW, 1.0, 0.2, 0.8),
        "error": LedPattern("blink", RED, 1.0, 0.15, 0.15),
        "ringing": LedPattern("blink", YELLOW, 1.0, 0.5, 0.5),
        # not a phase: ready with the microphone switched off (a short red flash every 3 s)
        "muted": LedPattern("blink", RED, 0.6, 0.1, 2.9),
    }
)


@dataclass(frozen=True)
class LiveSettings:
    """The [live] section: model, endpoint and session setup for Gemini Live."""

    model: str = "gemini-3.8-live"
    api_version: str = "v1beta"
    endpoint: str = ""
    ca_file: str = ""
    api_key_file: str = ""
    voice: str = ""
    language_code: str = ""
    system_instruction: str = ""
    system_instruction_file: str = ""
    system_instruction_text: str = ""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    candidate_count: int | None = None
    max_output_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    response_modalities: tuple[str, ...] = ("AUDIO",)
    input_transcription: bool = True
    output_transcription: bool = True
    thinking_budget: int | None = None
    thinking_level: str = ""
    automatic_activity_detection: bool = False
    start_sensitivity: str = ""
    end_sensitivity: str = ""
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    activity_handling: str = "interrupts"
    turn_coverage: str = "only_activity"
    compression: bool = True
    compression_trigger_tokens: int | None = None
    compression_target_tokens: int | None = None
    media_resolution: str = ""
    connect_timeout_s: float = 10.0
    google_search: bool = False

    def __post_init__(self) -> None:
        # The effective instruction text defaults to the inline instruction;
        # config.load() fills it from system_instruction_file instead.
        if not self.system_instruction_text and self.system_instruction:
            object.__setattr__(self, "system_instruction_text", self.system_instruction)


@dataclass(frozen=True)
class AudioSettings:
    """The [audio] section: sound devices, chunking and levels."""

    input_device: str | int = ""
    output_device: str | int = ""
    chunk_ms: int = 20
    input_gain_db: float = 0.0
    volume: float = 1.0
    pending_s: float = 30.0
    barge_in: bool = True
    echo: str = "aec"
    echo_tail_ms: int = 200
    vad_aggressiveness: int = 3
    vad_start_frames: int = 3
    vad_window_frames: int = 4
    vad_end_ms: int = 700
    preroll_ms: int = 300

    @property
    def listens(self) -> bool:
        """Whether the microphone chain looks at the audio (else blocks pass straight through)."""
        return self.barge_in or self.echo == "aec"

    @property
    def capture_block_ms(self) -> int:
        """Capture in 10 ms blocks when the chain listens (a barge-in is decided 10 ms sooner);
        the chain gathers them into ``chunk_ms`` chunks for the uplink."""
        return 10 if self.listens else self.chunk_ms

    @property
    def pending_bytes(self) -> int:
        """The uplink outbox's budget: ``pending_s`` of microphone audio (16 kHz s16 mono)."""
        return int(self.pending_s * INPUT_RATE * 2)


@dataclass(frozen=True)
class PanelSettings:
    """The [panel] section: push-to-talk button, status LED and keyboard."""

    button_pin: int | None = 17
    button: bool = True
    button_pull_up: bool = True
    bounce_s: float = 0.02
    led: str = "pwm"
    led_pins: tuple[int, ...] = (27,)
    led_active_high: bool = True
    keyboard: str = "auto"
    volume_up_pin: int | None = None
    volume_down_pin: int | None = None
    mute_pin: int | None = None
    mute_switch: str = "toggle"
    patterns: Mapping[str, LedPattern] = field(default_factory=lambda: DEFAULT_PATTERNS)


@dataclass(frozen=True)
class SessionSettings:
    """The [session] section: how the Live session is kept."""

    idle_disconnect_s: float = 300.0
    connect_at_start: bool = False
    reset_hold_s: float = 0.0
    error_retry_s: float = 300.0
    answer_timeout_s: float = 20.0
    state_dir: str = ""


@dataclass(frozen=True)
class VisionSettings:
    """The [vision] section: the camera, sampled while a conversation is active."""

    mode: str = "while_talking"
    fps: float = 2.0
    max_side: int = 768
    quality: int = 75
    camera: str = "picamera2"
    indicator_pin: int | None = None
    retry_s: float = 30.0


@dataclass(frozen=True)
class ToolOptions:
    """A [tools.options.NAME] table: how one tool's calls are made and answered."""

    behavior: str = ""
    scheduling: str = ""
    deadline_s: float | None = None


@dataclass(frozen=True)
class McpServerSettings:
    """A [[tools.mcp]] table: one MCP server whose tools the model may call."""

    #: Short name; its tools are declared as ``NAME_TOOL`` (the prefix).
    name: str = ""
    #: A command run with its standard input and output as the MCP stream ...
    command: tuple[str, ...] = ()
    #: ... or a streamable-HTTP URL.
    url: str = ""
    #: A file holding a bearer token for the URL (a secret: never shown).
    token_file: str = ""
    #: Only these of its tools (their own names, without the prefix); empty: all of them.
    allow: tuple[str, ...] = ()
    deadline_s: float = 10.0
    behavior: str = "non_blocking"
    scheduling: str = "when_idle"

    @property
    def prefix(self) -> str:
        return f"{self.name}_"


@dataclass(frozen=True)
class ToolsSettings:
    """The [tools] section: what the assistant may do on the device, and MCP servers."""

    time: bool = True
    device: bool = True
    volume: bool = True
    reset: bool = True
    timers: bool = True
    #: One camera frame on request: "auto" (when [vision] mode is not "off"), "on" or "off".
    look: str = "auto"
    alarm_volume: float = 0.8
    alarm_ring_s: float = 60.0
    max_timers: int = 20
    behavior: str = "non_blocking"
    options: Mapping[str, ToolOptions] = field(default_factory=lambda: FrozenMap())
    mcp: tuple[McpServerSettings, ...] = ()

    def look_enabled(self, vision_mode: str) -> bool:
        return self.look == "on" or (self.look == "auto" and vision_mode != "off")


@dataclass(frozen=True)
class LogSettings:
    """The [log] section."""

    level: str = "info"
    transcripts: bool = True


@dataclass(frozen=True)
class MqttSettings:
    """The [mqtt] section: Home Assistant through an MQTT broker (off unless ``enabled``)."""

    enabled: bool = False
    host: str = "localhost"
    port: int = 1883
    tls: bool = False
    #: A PEM bundle of the CA that signed the broker's certificate; "" = the system's CAs.
    ca_file: str = ""
    username: str = ""
    #: A file holding the broker password (a secret: never shown); "" = no password.
    password_file: str = ""
    discovery_prefix: str = "homeassistant"
    base_topic: str = "talkie"
    #: The device's name in Home Assistant.
    device_name: str = "talkie"
    #: "" = derived from /etc/machine-id (else the host name): see talkie.mqtt.device_id.
    device_id: str = ""
    keepalive_s: int = 60


@dataclass(frozen=True)
class Settings:
    """Everything talkie reads from its config file (never the API key)."""

    source: str = ""
    live: LiveSettings = field(default_factory=LiveSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    panel: PanelSettings = field(default_factory=PanelSettings)
    session: SessionSettings = field(default_factory=SessionSettings)
    vision: VisionSettings = field(default_factory=VisionSettings)
    tools: ToolsSettings = field(default_factory=ToolsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    #: What the file says that talkie takes but warns about (a retired key), one line each as
    #: ``file:line: [section] key: ...``; not part of the settings themselves.
    notes: tuple[str, ...] = field(default=(), compare=False)
