"""The pure core: the machine's vocabulary, the state machine and the outbox. No I/O."""
