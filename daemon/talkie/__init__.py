"""talkie: push-to-talk Gemini Live on a Raspberry Pi."""
