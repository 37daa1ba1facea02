"""From ``[live]`` settings to the google-genai objects that open a session.

Only this module and :mod:`talkie.live.link` import ``google.genai``, and only inside functions: the
import costs most of a second and is not needed before the first press.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from google.genai import types

    from talkie.config import LiveSettings

_HANDLING = {"interrupts": "START_OF_ACTIVITY_INTERRUPTS", "no_interruption": "NO_INTERRUPTION"}
_COVERAGE = {
    "only_activity": "TURN_INCLUDES_ONLY_ACTIVITY",
    "all_input": "TURN_INCLUDES_ALL_INPUT",
    "audio_activity_and_all_video": "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO",
}
_START_SENSITIVITY = {"high": "START_SENSITIVITY_HIGH", "low": "START_SENSITIVITY_LOW"}
_END_SENSITIVITY = {"high": "END_SENSITIVITY_HIGH", "low": "END_SENSITIVITY_LOW"}
_RESOLUTION = {
    "low": "MEDIA_RESOLUTION_LOW",
    "medium": "MEDIA_RESOLUTION_MEDIUM",
    "high": "MEDIA_RESOLUTION_HIGH",
}

#: websockets keepalive: a ping every 20 s, and a generous timeout so a busy uplink does not
#: close its own connection (a self-inflicted 1011).
KEEPALIVE = {"ping_interval": 20.0, "ping_timeout": 60.0}


def _unset_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v not in (None, "")}


def connect_config(
    live: LiveSettings, handle: str | None = None, declarations: Sequence[Mapping[str, Any]] = ()
) -> types.LiveConnectConfig:
    """The LiveConnectConfig for a session with these settings.

    Every setup asks for session resumption; with ``handle`` (from an earlier session's
    ``sessionResumptionUpdate``) the session continues that conversation. ``declarations`` are
    the tools the model may call (:meth:`talkie.tools.Tool.declaration`); ``[live]
    google_search`` adds Google Search.
    """
    from google.genai import types

    detection = types.AutomaticActivityDetection(
        disabled=not live.automatic_activity_detection,
        **_unset_none(
            start_of_speech_sensitivity=_START_SENSITIVITY.get(live.start_sensitivity),
            end_of_speech_sensitivity=_END_SENSITIVITY.get(live.end_sensitivity),
            prefix_padding_ms=live.prefix_padding_ms,
            silence_duration_ms=live.silence_duration_ms,
        ),
    )
    fields: dict[str, Any] = dict(
        response_modalities=list(live.response_modalities),
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=detection,
            activity_handling=types.ActivityHandling(_HANDLING[live.activity_handling]),
            turn_coverage=types.TurnCoverage(_COVERAGE[live.turn_coverage]),
        ),
        session_resumption=types.SessionResumptionConfig(**_unset_none(handle=handle)),
    )
    fields.update(
        _unset_none(
            temperature=live.temperature,
            top_p=live.top_p,
            top_k=live.top_k,
            max_output_tokens=live.max_output_tokens,
            seed=live.seed,
            media_resolution=_RESOLUTION.get(live.media_resolution),
            system_instruction=live.system_instruction_text or None,
        )
    )
    if live.input_transcription:
        fields["input_audio_transcription"] = types.AudioTranscriptionConfig()
    if live.output_transcription:
        fields["output_audio_transcription"] = types.AudioTranscriptionConfig()
    speech = _unset_none(language_code=live.language_code)
    if live.voice:
        speech["voice_config"] = types.VoiceConfig(
            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=live.voice)
        )
    if speech:
        fields["speech_config"] = types.SpeechConfig(**speech)
    if live.thinking_budget is not None:
        fields["thinking_config"] = types.ThinkingConfig(thinking_budget=live.thinking_budget)
    elif live.thinking_level:
        level = types.ThinkingLevel(live.thinking_level.upper())
        fields["thinking_config"] = types.ThinkingConfig(thinking_level=level)
    if live.compression:
        window = _unset_none(target_tokens=live.compression_target_tokens)
        fields["context_window_compression"] = types.ContextWindowCompressionConfig(
            sliding_window=types.SlidingWindow(**window),
            **_unset_none(trigger_tokens=live.compression_trigger_tokens),
        )
    # Settings the Live config only takes through its (deprecated) nested generation config.
    extra = _unset_none(
        candidate_count=live.candidate_count,
        presence_penalty=live.presence_penalty,
        frequency_penalty=live.frequency_penalty,
    )
    if extra:
        fields["generation_config"] = types.GenerationConfig(**extra)
    tools = _tools(types, live, declarations)
    if tools:
        fields["tools"] = tools
    return types.LiveConnectConfig(**fields)


def _tools(
    types: Any, live: LiveSettings, declarations: Sequence[Mapping[str, Any]]
) -> list[types.Tool]:
    tools = []
    if declarations:
        functions = [
            types.FunctionDeclaration(
                name=d["name"],
                description=d["description"],
                parameters_json_schema=d["parameters_json_schema"],
                behavior=types.Behavior(d["behavior"]),
            )
            for d in declarations
        ]
        tools.append(types.Tool(function_declarations=functions))
    if live.google_search:
        tools.append(types.Tool(google_search=types.GoogleSearch()))
    return tools


def http_options(live: LiveSettings) -> types.HttpOptions:
    """Endpoint, API version, TLS trust and websocket keepalive.

    One TLS context serves the session's websocket and the SDK's HTTP clients (which the Live
    path never uses, but ``genai.Client`` builds them): left to itself, the SDK loads a CA store
    for each (certifi's for the websocket, the system's for HTTP), and a store of ~140 CAs is
    0.8-0.9 MB of a small device's memory (``tests/bench/idle.py``) for one that is never used.
    The trust is the websocket's as the SDK would set it: ``[live] ca_file`` if set, otherwise
    certifi's bundle (or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``).
    """
    from google.genai import types

    context = tls_context(live.ca_file)
    client_args: dict[str, Any] = dict(KEEPALIVE, ssl=context, verify=context)
    return types.HttpOptions(
        api_version=live.api_version,
        client_args={"verify": context},
        async_client_args=client_args,
        **_unset_none(base_url=live.endpoint),
    )


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The one TLS context of a client: ``ca_file``'s CAs, or the SDK's default trust."""
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    import certifi  # the SDK's own dependency and its default for the websocket

    return ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE", certifi.where()),
        capath=os.environ.get("SSL_CERT_DIR"),
    )
