"""A/B updates of the Debian image: RAUC's custom bootloader backend on the Raspberry Pi's
``autoboot.txt``/tryboot (:mod:`.backend`), the trial boot's health check and commit
(:mod:`.health`), and ``talkie update BUNDLE|URL`` (:mod:`.command`). The card's layout and
the firmware's choice are :mod:`talkie.system.slots`."""
