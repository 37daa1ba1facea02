"""The imperative shell: the only place that knows every adapter and wires them to the machine."""
