"""The declarative schema: for every key of every section, its kind of value, what is allowed and
what it means, in one table (``SECTIONS``, and ``PATTERN_FIELDS`` for an LED pattern).

:mod:`talkie.config` drives validation, messages and ``describe()`` from it; the defaults are the
settings' own (:mod:`talkie.config.settings`). Nothing here knows about files or line numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from talkie.config.files import CA_MAX, INSTRUCTION_MAX
from talkie.config.kinds import (
    BCP47,
    Bool,
    Choice,
    Device,
    Float,
    Int,
    Kind,
    ListOf,
    Path,
    Switch,
    Text,
    is_endpoint,
    is_http_url,
)
from talkie.config.settings import (
    AudioSettings,
    LiveSettings,
    LogSettings,
    McpServerSettings,
    MqttSettings,
    PanelSettings,
    SessionSettings,
    ToolsSettings,
    VisionSettings,
)


@dataclass(frozen=True)
class FieldSpec:
    """One key of a section: its name, kind (type + allowed values) and a
    one-line description.  The default comes from the section's dataclass."""

    name: str
    kind: Kind
    doc: str


F = FieldSpec
PIN = Int(0, 27)
SENSITIVITY = Choice("", "high", "low")

LIVE_FIELDS = (
    F(
        "model",
        Text("a non-empty model name", nonempty=True, max_len=128),
        "Gemini Live model name",
    ),
    F("api_version", Choice("v1alpha", "v1beta", "v1"), "API version of the endpoint"),
    F(
        "endpoint",
        Text(
            '"" (Google) or a URL like https://host[:port] or wss://host[:port]/path',
            valid=is_endpoint,
            max_len=2048,
        ),
        'private endpoint URL; "" = Google\'s',
    ),
    F(
        "ca_file",
        Path('a readable PEM CA bundle, or "" for the system CAs', must_exist=True, limit=CA_MAX),
        "CA bundle trusted for a private endpoint",
    ),
    F(
        "api_key_file",
        Path('a file path, or "" for the systemd credential / environment'),
        "file holding the API key (read at start-up, never shown)",
    ),
    F(
        "voice",
        Text('a voice name like "Puck", or "" for the model default', max_len=64),
        "prebuilt voice",
    ),
    F(
        "language_code",
        Text('a BCP-47 code like "en-US", or "" for automatic', valid=BCP47.fullmatch),
        "speech language",
    ),
    F("system_instruction", Text(max_len=16384), "system instruction text"),
    F(
        "system_instruction_file",
        Path('a readable UTF-8 text file, or "" for none', must_exist=True, limit=INSTRUCTION_MAX),
        "file holding the system instruction",
    ),
    F("temperature", Float(0, 2), "sampling temperature; unset = model default"),
    F("top_p", Float(0, 1), "nucleus sampling; unset = model default"),
    F("top_k", Int(1), "top-k sampling; unset = model default"),
    F("candidate_count", Int(1, 8), "number of candidates; unset = model default"),
    F("max_output_tokens", Int(1), "reply length limit; unset = model default"),
    F("presence_penalty", Float(-2, 2), "unset = model default"),
    F("frequency_penalty", Float(-2, 2), "unset = model default"),
    F("seed", Int(), "sampling seed; unset = random"),
    F(
        "response_modalities",
        ListOf(
            Choice("AUDIO", "TEXT", upper=True),
            'an array of "AUDIO" and/or "TEXT", e.g. ["AUDIO"]',
            max_len=2,
        ),
        "what the model replies with",
    ),
    F("input_transcription", Bool(), "transcribe what you say"),
    F("output_transcription", Bool(), "transcribe what the model says"),
    F("thinking_budget", Int(-1, 32768), "-1 = dynamic, 0 = off; unset = model default"),
    F("thinking_level", Choice("", "minimal", "low", "medium", "high"), '"" = model default'),
    F("automatic_activity_detection", Bool(), "false = push-to-talk"),
    F("start_sensitivity", SENSITIVITY, "speech start sensitivity (automatic mode)"),
    F("end_sensitivity", SENSITIVITY, "speech end sensitivity (automatic mode)"),
    F("prefix_padding_ms", Int(0, 5000), "automatic mode; unset = model default"),
    F("silence_duration_ms", Int(0, 10000), "automatic mode; unset = model default"),
    F(
        "activity_handling",
        Choice("interrupts", "no_interruption"),
        "whether speaking interrupts the model",
    ),
    F(
        "turn_coverage",
        Choice("only_activity", "all_input", "audio_activity_and_all_video"),
        "which input counts towards a turn",
    ),
    F("compression", Bool(), "context window compression (long sessions)"),
    F("compression_trigger_tokens", Int(1000), "compress above this; unset = server default"),
    F("compression_target_tokens", Int(100), "compress down to this; unset = server default"),
    F("media_resolution", Choice("", "low", "medium", "high"), '"" = model default'),
    F("connect_timeout_s", Float(1, 120), "seconds to wait for the connection"),
    F("google_search", Bool(), "let the model search the web with Google Search (grounding)"),
)

AUDIO_FIELDS = (
    F("input_device", Device(), 'microphone; "" = system default'),
    F("output_device", Device(), 'speaker; "" = system default'),
    F("chunk_ms", Int(10, 100), "uplink chunk length in milliseconds"),
    F("input_gain_db", Float(-20, 30), "microphone gain in dB"),
    F("volume", Float(0, 1), "playback gain"),
    F("pending_s", Float(10, 300), "most audio kept while the link is down (seconds)"),
    F("barge_in", Bool(), "your voice stops the answer and starts a turn (the button always does)"),
    F(
        "echo",
        Choice("aec", "half_duplex", "off"),
        "echo control: aec = cancel the speaker's sound in the microphone; "
        "half_duplex = ignore the microphone while the speaker plays; off = none (headphones)",
    ),
    F("echo_tail_ms", Int(50, 500), "longest echo the canceller models (delay + reverb), in ms"),
    F(
        "vad_aggressiveness",
        Int(0, 3),
        "voice detector: 0 = most sensitive, 3 = least easily fooled",
    ),
    F("vad_start_frames", Int(1, 20), "speech starts after this many voiced 10 ms frames ..."),
    F("vad_window_frames", Int(1, 20), "... among the last this many"),
    F("vad_end_ms", Int(200, 5000), "speech ends after this much silence (ms)"),
    F("preroll_ms", Int(0, 1000), "audio from before the voice began sent with its turn (ms)"),
)

PANEL_FIELDS = (
    F("button_pin", PIN, "BCM pin of the push-to-talk button"),
    F("button", Bool(), "false = no GPIO button"),
    F("button_pull_up", Bool(), "true = button to GND with the internal pull-up"),
    F("bounce_s", Float(0, 1), "button debounce time (seconds)"),
    F("led", Choice("none", "plain", "pwm", "rgb"), "kind of status LED"),
    F(
        "led_pins",
        ListOf(PIN, "an array of BCM pins 0 to 27: 1 pin, or 3 (red, green, blue)", max_len=3),
        "BCM pins of the LED",
    ),
    F("led_active_high", Bool(), "false = LED on when the pin is low"),
    F("keyboard", Choice("auto", "off"), "auto = keyboard + terminal LED on a tty"),
    F("volume_up_pin", PIN, "BCM pin of a button that turns the speaker up; unset = none"),
    F("volume_down_pin", PIN, "BCM pin of a button that turns the speaker down; unset = none"),
    F("mute_pin", PIN, "BCM pin of the microphone's mute button or switch; unset = none"),
    F(
        "mute_switch",
        Choice("toggle", "switch"),
        "toggle = a push button: each press switches the microphone off or on; "
        "switch = a latching switch: closed = microphone off",
    ),
)

PATTERN_FIELDS = (
    F("kind", Choice("off", "solid", "blink", "pulse"), "what the LED does"),
    F(
        "color",
        ListOf(
            Float(0, 1),
            "an array of 3 numbers 0.0 to 1.0 (red, green, blue)",
            min_len=3,
            max_len=3,
            unique=False,
        ),
        "RGB LEDs only",
    ),
    F("brightness", Float(0, 1), "0.0 to 1.0 (plain LED: on when > 0)"),
    F("on_s", Float(0.02, 10), "blink: time on; pulse: fade-in time"),
    F("off_s", Float(0.02, 10), "blink: time off; pulse: fade-out time"),
)

SESSION_FIELDS = (
    F(
        "idle_disconnect_s",
        Float(0, 86400),
        "close the Live session after this long without a conversation; 0 = keep it open",
    ),
    F("connect_at_start", Bool(), "open a session at start and keep one open"),
    F("reset_hold_s", Float(0, 300), "hold the button this long for a fresh conversation; 0 = off"),
    F(
        "error_retry_s",
        Float(10, 3600),
        "after an error only you can fix (bad key, unknown model), try again this often",
    ),
    F(
        "answer_timeout_s",
        Float(0, 600),
        "give up on an answer that has not begun this long after your turn; 0 = wait forever",
    ),
    F(
        "state_dir",
        Path('a folder, or "" for $STATE_DIRECTORY or /var/lib/talkie'),
        "where the conversation's resumption handle is kept",
    ),
)

VISION_FIELDS = (
    F(
        "mode",
        Choice("off", "while_talking", "conversation", "always"),
        "when the camera is sampled",
    ),
    F("fps", Float(0.2, 5), "frames per second sent while the camera is on"),
    F("max_side", Int(64, 2048), "longest side of a frame in pixels"),
    F("quality", Int(10, 100), "JPEG quality"),
    F(
        "camera",
        Choice("picamera2", "synthetic"),
        "picamera2 = the Pi camera (or a USB webcam through libcamera); synthetic = a test card",
    ),
    F("indicator_pin", PIN, "BCM pin of an LED lit while the camera is on; unset = none"),
    F("retry_s", Float(5, 3600), "after a camera fault, try again this often (seconds)"),
)

BEHAVIOR = Choice("non_blocking", "blocking")
SCHEDULING = Choice("interrupt", "when_idle", "silent")
TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
SERVER_NAME = re.compile(r"[a-z][a-z0-9]{0,15}")

TOOLS_FIELDS = (
    F("time", Bool(), "the model may ask the device's date and time (its time zone)"),
    F("device", Bool(), "the model may ask how the device is, and start a fresh conversation"),
    F("volume", Bool(), "the model may get and change the speaker's volume, and mute it"),
    F("reset", Bool(), "the model may start a fresh conversation when you ask"),
    F("timers", Bool(), "the model may set, list and cancel timers and alarms"),
    F("look", Switch(), 'one camera frame on request; auto = when [vision] mode is not "off"'),
    F("alarm_volume", Float(0, 1), "loudness of the timer's ring"),
    F("alarm_ring_s", Float(5, 600), "a ring nobody silences stops after this many seconds"),
    F("max_timers", Int(1, 100), "most timers and alarms set at once"),
    F("behavior", BEHAVIOR, "how the model waits for a tool: non_blocking = it keeps talking"),
)

OPTION_FIELDS = (
    F("behavior", Choice("", "non_blocking", "blocking"), '"" = [tools] behavior'),
    F("scheduling", Choice("", "interrupt", "when_idle", "silent"), '"" = the tool\'s own'),
    F("deadline_s", Float(0.1, 120), "longest a call may take (seconds); unset = the tool's own"),
)

MCP_FIELDS = (
    F(
        "name",
        Text(
            'a short name of lower-case letters and digits, like "home"',
            nonempty=True,
            valid=SERVER_NAME.fullmatch,
            max_len=16,
        ),
        "the server's name: its tools are offered as NAME_TOOL",
    ),
    F(
        "command",
        ListOf(
            Text("a string", nonempty=True, max_len=4096),
            'an array of strings, the program first, e.g. ["/usr/local/bin/my-mcp", "--stdio"]',
            max_len=64,
            unique=False,
        ),
        "a program spoken to over its standard input and output (stdio)",
    ),
    F(
        "url",
        Text("an http:// or https:// URL", valid=is_http_url, max_len=2048),
        "a streamable-HTTP MCP endpoint",
    ),
    F(
        "token_file",
        Path('a file path like "tokens/home.token" (in /etc/talkie/tokens), or "" for none'),
        "file holding a bearer token for the URL (never shown)",
    ),
    F(
        "allow",
        ListOf(
            Text("a tool name", valid=TOOL_NAME.fullmatch, nonempty=True, max_len=64),
            'an array of the server\'s tool names, e.g. ["HassTurnOn", "HassTurnOff"]',
            max_len=256,
        ),
        "only these tools of the server; unset = all of them",
    ),
    F("deadline_s", Float(0.1, 120), "longest a call may take (seconds)"),
    F("behavior", BEHAVIOR, "how the model waits for these tools"),
    F("scheduling", SCHEDULING, "how the model is told of their results"),
)

LOG_FIELDS = (
    F("level", Choice("debug", "info", "warning", "error"), "log level"),
    F("transcripts", Bool(), "log what was heard and said"),
)

#: An MQTT topic level of talkie's own: no "/", "+", "#" or spaces.
TOPIC_LEVEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: What Home Assistant allows in a discovery topic's node id (and talkie in its topics).
DEVICE_ID = re.compile(r"[a-z0-9_-]{1,64}")

MQTT_FIELDS = (
    F("enabled", Bool(), "talk to Home Assistant through an MQTT broker"),
    F(
        "host",
        Text("a host name or IP address", nonempty=True, max_len=253),
        "the MQTT broker's host name or address",
    ),
    F("port", Int(1, 65535), "the broker's port (1883; 8883 is usual with TLS)"),
    F("tls", Bool(), "connect to the broker over TLS"),
    F(
        "ca_file",
        Path('a readable PEM CA bundle, or "" for the system CAs', must_exist=True, limit=CA_MAX),
        "CA bundle trusted for the broker's certificate (with tls)",
    ),
    F("username", Text('a user name, or "" for none', max_len=256), "the broker's user name"),
    F(
        "password_file",
        Path('a file path like "mqtt-password" (in /etc/talkie), or "" for none'),
        "file holding the broker's password for username (never shown)",
    ),
    F(
        "discovery_prefix",
        Text(
            'a topic level of letters, digits and _ . - like "homeassistant"',
            nonempty=True,
            valid=TOPIC_LEVEL.fullmatch,
            max_len=64,
        ),
        "Home Assistant's MQTT discovery prefix",
    ),
    F(
        "base_topic",
        Text(
            'a topic level of letters, digits and _ . - like "talkie"',
            nonempty=True,
            valid=TOPIC_LEVEL.fullmatch,
            max_len=64,
        ),
        "talkie's topics begin BASE_TOPIC/DEVICE_ID/",
    ),
    F(
        "device_name",
        Text("a non-empty name", nonempty=True, max_len=64),
        "the device's name in Home Assistant",
    ),
    F(
        "device_id",
        Text(
            'lower-case letters, digits, _ and -, or "" to derive one from /etc/machine-id',
            valid=DEVICE_ID.fullmatch,
            max_len=64,
        ),
        "the device's id in topics and in Home Assistant",
    ),
    F("keepalive_s", Int(5, 3600), "seconds between keep-alive pings to the broker"),
)

# section name -> (dataclass, its keys); "panel" also takes [panel.patterns.NAME].
SECTIONS: dict[str, tuple[type, tuple[FieldSpec, ...]]] = {
    "live": (LiveSettings, LIVE_FIELDS),
    "audio": (AudioSettings, AUDIO_FIELDS),
    "panel": (PanelSettings, PANEL_FIELDS),
    "session": (SessionSettings, SESSION_FIELDS),
    "vision": (VisionSettings, VISION_FIELDS),
    "tools": (ToolsSettings, TOOLS_FIELDS),
    "log": (LogSettings, LOG_FIELDS),
    "mqtt": (MqttSettings, MQTT_FIELDS),
}
#: The tables of an array of tables: [[tools.mcp]].
MCP = (McpServerSettings, MCP_FIELDS)

#: Keys talkie no longer uses: a file that has one still loads, with a note that says so.
RETIRED: dict[tuple[str, str], str] = {
    ("panel", "hold_s"): (
        "does nothing and can go (the long hold that starts a fresh conversation is "
        "[session] reset_hold_s); a later release will refuse it"
    )
}
