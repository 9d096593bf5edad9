"""The ``tormentor-engine`` command line: wires the engine and the transport for users.

Only this package turns exceptions into messages and exit codes (:mod:`.exit_codes`).
"""
