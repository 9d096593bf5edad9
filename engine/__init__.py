"""The engine: the math and the protocol logic of brokered learning, transport-free.

Nothing here imports NATS, Tor or any network library: the same objects run in process
(:mod:`.simulation`), over NATS and behind a Tor onion service.

Modules
-------
kernels
    Numba kernels with NumPy/hashlib references: logistic gradients, isotropic Laplace
    noise, batched RONI scores, SHA-256 proof-of-work search.
protocol
    The messages of the paper's Table 1 API, the task a curator defines, error codes.
broker, brokerage
    One broker per curated model (admission, k gate, aggregation, validation, liveness,
    stopping), and the process-level router that creates them on ``curate``.
aggregator, validator, pow
    The parameter server (async lock-free / sync), RONI rounds with snapshots
    (Algorithm 2), puzzles and adaptive difficulty.
client, dp_sgd, ledger, privacy
    The client's state machine (Algorithm 1), its DP-SGD step, and its own privacy
    ledger with basic, amplified and PLD composition.
curator, model
    The curator's requests; the model interface (logistic regression).
data, data_fetch, centralised
    The credit-card pipeline (no label leak), the checksummed download, the
    centralised baseline.
attacks
    Poisoner, inversion attacker and sybils, apart from honest code.
simulation
    In-process runs on a virtual clock.
"""
