"""One-shot commands that never run inside the daemon: first boot and the hardware self-test."""
