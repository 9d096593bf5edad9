"""A hostile anonymous client against the real broker stack (nats-server, auth callout,
broker service), while honest clients train beside it.

Everything the attacker tries is refused, the broker keeps serving, and every update the
honest clients had accepted is applied: the broker's count equals theirs exactly.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgpack
import nats
import numpy as np
import pytest

from tormentor.engine.brokerage import Brokerage
from tormentor.engine.client import LearningClient
from tormentor.engine.curator import CuratorSession, curate_request
from tormentor.engine.dp_sgd import StepConfig
from tormentor.engine.pow import solve_puzzle
from tormentor.engine.protocol import (
    PROTOCOL_VERSION,
    Admitted,
    Challenge,
    Defences,
    Error,
    Join,
    Solve,
    StoppingRule,
    TaskSpec,
    Update,
    Work,
)
from tormentor.transport.auth_callout import AuthCalloutService
from tormentor.transport.broker_service import BrokerService
from tormentor.transport.client_runner import NatsRequester, connect_client, run_clients
from tormentor.transport.codec import decode, encode
from tormentor.transport.errors import PermissionDenied, translate
from tormentor.transport.nats_server import NatsServer, ServerLimits
from tormentor.transport.subjects import (
    CLIENT_REQUESTS,
    CURATOR_REQUESTS,
    client_connect_options,
    client_inbox_prefix,
    new_client_secret,
)

pytestmark = [pytest.mark.nats, pytest.mark.slow]

D = 6
HONEST = 3
UPDATES_EACH = 150
CLIENT_PAYLOAD = 4096


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.hstack([rng.normal(size=(n, D - 1)), np.ones((n, 1))])
    y = np.where(x @ np.linspace(-1, 1, D) + 0.2 * rng.normal(size=n) > 0, 1.0, -1.0)
    return x, y


class Violations:
    """Collects the asynchronous permission errors nats-py reports on a connection."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []

    async def callback(self, error: Exception) -> None:
        self.errors.append(translate(error))

    def denied(self, action: str) -> set[str]:
        return {e.subject for e in self.errors if isinstance(e, PermissionDenied) and e.action == action}


async def raw_request(nc, payload: bytes):
    msg = await nc.request(CLIENT_REQUESTS, payload, timeout=5)
    return decode(msg.data, accept=(Error, Work, Challenge, Admitted), max_bytes=1 << 20)


def frame(message_type: str, version: int = PROTOCOL_VERSION, **fields) -> bytes:
    return msgpack.packb({"v": version, "t": message_type, **fields}, use_bin_type=True)


async def scenario() -> dict:
    limits = ServerLimits(client_max_payload_bytes=CLIENT_PAYLOAD)
    with NatsServer(limits) as server:
        async with AuthCalloutService(server.url, server.callout, server.callout_issuer_seed):
            broker_nc = await nats.connect(server.url, **server.broker.connect_options())
            service = BrokerService(Brokerage(), max_client_bytes=CLIENT_PAYLOAD)
            await service.start(broker_nc)
            curator_nc = await nats.connect(server.url, **server.curator.connect_options())
            curator = NatsRequester(curator_nc, timeout_s=10, subject=CURATOR_REQUESTS)
            x_val, y_val = synthetic(500, 0)
            task = TaskSpec(
                n_features=D,
                stopping=StoppingRule(max_updates=None, deadline_s=120),
                defences=Defences(admission_bits=8, update_bits=2, validator=False),
            )
            session = CuratorSession.from_reply(await curator.request(curate_request(task, x_val, y_val)))
            clients = [
                LearningClient(
                    *synthetic(300, 1 + i),
                    model_id=session.model_id,
                    step=StepConfig(),
                    max_updates=UPDATES_EACH,
                    rng=np.random.default_rng(i),
                )
                for i in range(HONEST)
            ]
            honest = asyncio.create_task(run_clients(clients, server.url))
            attack = await attack_everything(server.url, session.model_id)
            outcomes = await honest
            progress = await curator.request(session.status())
            result = {"attack": attack, "outcomes": outcomes, "progress": progress, "service": service.stats}
            await service.stop()
            await broker_nc.close()
            await curator_nc.close()
            return result


async def attack_everything(url: str, model_id: str) -> dict:
    results: dict = {}
    violations = Violations()
    secret = new_client_secret()
    nc = await nats.connect(url, error_cb=violations.callback, **client_connect_options(secret))
    seen: list = []

    async def spy(msg):
        seen.append(msg.subject)

    # Eavesdropping: every subscription outside its own inbox is refused.
    victim_prefix = client_inbox_prefix(new_client_secret())
    targets = [
        ">",
        "_INBOX.>",
        "_I.>",
        f"{victim_prefix}.>",
        CLIENT_REQUESTS,
        CURATOR_REQUESTS,
        "_C.>",
        "_B.>",
    ]
    for subject in targets:
        await nc.subscribe(subject, cb=spy)
    # Forged replies and publishing outside the request subject are refused.
    for subject in (f"{victim_prefix}.forged", CURATOR_REQUESTS, "tormentor.v1.anything", "_R_.fake"):
        await nc.publish(subject, b"forged")
    await nc.flush()
    await asyncio.sleep(0.5)

    # Garbage on the one subject it may use: typed errors, never a dead broker.
    results["garbage"] = await raw_request(nc, b"\xc1\xff not msgpack")
    results["not_a_map"] = await raw_request(nc, msgpack.packb([1, 2, 3]))
    results["wrong_version"] = await raw_request(
        nc, frame("join", version=99, model_id=model_id, n_features=D, k=1)
    )
    results["unknown_type"] = await raw_request(nc, frame("teleport", model_id=model_id))
    results["reply_type"] = await raw_request(nc, frame("done", reason="x"))
    results["curator_type_on_client_subject"] = await raw_request(
        nc, frame("status", model_id=model_id, secret=b"s")
    )
    results["unknown_model"] = await raw_request(nc, encode(Join(model_id="0" * 16, n_features=D, k=1)))
    results["schema"] = await raw_request(nc, encode(Join(model_id=model_id, n_features=D + 3, k=1)))

    # A legitimate admission, then protocol abuse with its own token.
    requester = NatsRequester(nc, timeout_s=5)
    challenge = await requester.request(Join(model_id=model_id, n_features=D, k=1))
    admitted = await requester.request(
        Solve(
            model_id=model_id, join_id=challenge.join_id, nonce=solve_puzzle(challenge.puzzle, challenge.bits)
        )
    )
    assert isinstance(admitted, Admitted)
    nan_delta = np.full(D, np.nan).astype("<f8").tobytes()
    nonce = solve_puzzle(admitted.puzzle, admitted.bits)
    results["nan"] = await raw_request(
        nc,
        frame(
            "update",
            model_id=model_id,
            token=admitted.token,
            base=admitted.puzzle,
            nonce=nonce,
            delta=nan_delta,
        ),
    )
    results["wrong_shape"] = await raw_request(
        nc,
        frame(
            "update",
            model_id=model_id,
            token=admitted.token,
            base=admitted.puzzle,
            nonce=nonce,
            delta=np.zeros(D + 2).astype("<f8").tobytes(),
        ),
    )
    results["stolen_token"] = await requester.request(
        Update(
            model_id=model_id, token=new_client_secret(), base=admitted.puzzle, nonce=nonce, delta=np.zeros(D)
        )
    )
    good = Update(
        model_id=model_id, token=admitted.token, base=admitted.puzzle, nonce=nonce, delta=np.zeros(D)
    )
    results["first"] = await requester.request(good)
    results["replay"] = await requester.request(good)

    results["spied"] = list(seen)
    results["denied_sub"] = violations.denied("subscribe")
    results["denied_pub"] = violations.denied("publish")
    await nc.close()

    # A payload over the client limit: the server closes that connection.
    big = await connect_client(url)
    with contextlib.suppress(Exception):
        await big.publish(CLIENT_REQUESTS, b"x" * (CLIENT_PAYLOAD + 1))
        await big.flush(timeout=2)
    await asyncio.sleep(0.5)
    results["oversized_connection_closed"] = big.is_closed or not big.is_connected
    with contextlib.suppress(Exception):
        await big.close()
    return results


@pytest.fixture(scope="module")
def outcome():
    return asyncio.run(scenario())


def code(reply) -> str:
    assert isinstance(reply, Error), reply
    return reply.code


def test_eavesdropping_is_refused_and_sees_nothing(outcome):
    attack = outcome["attack"]
    assert attack["spied"] == []
    expected = {">", "_inbox.>", "_i.>", CLIENT_REQUESTS, CURATOR_REQUESTS, "_c.>", "_b.>"}
    assert expected <= {s.lower() for s in attack["denied_sub"]}
    assert any(s.startswith("_i.") and s.endswith(".>") and len(s) > 6 for s in attack["denied_sub"])


def test_forged_replies_and_foreign_subjects_are_refused(outcome):
    denied = {s.lower() for s in outcome["attack"]["denied_pub"]}
    assert CURATOR_REQUESTS in denied and "tormentor.v1.anything" in denied and "_r_.fake" in denied
    assert any(s.endswith(".forged") for s in denied)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        ("garbage", "malformed"),
        ("not_a_map", "malformed"),
        ("wrong_version", "bad_version"),
        ("unknown_type", "unknown_type"),
        ("reply_type", "unknown_type"),
        ("curator_type_on_client_subject", "unknown_type"),
        ("unknown_model", "unknown_model"),
        ("schema", "schema_mismatch"),
        ("nan", "non_finite"),
        ("wrong_shape", "bad_shape"),
        ("stolen_token", "unknown_token"),
        ("replay", "stale_proof"),
    ],
)
def test_bad_requests_get_typed_errors(outcome, attempt, expected):
    assert code(outcome["attack"][attempt]) == expected


def test_oversized_payload_closes_the_attackers_connection(outcome):
    assert outcome["attack"]["oversized_connection_closed"]


def test_broker_kept_serving_and_applied_every_honest_update(outcome):
    outcomes, progress = outcome["outcomes"], outcome["progress"]
    assert all(o.stop.ok for o in outcomes), [o.stop for o in outcomes]
    assert [o.updates_sent for o in outcomes] == [UPDATES_EACH] * HONEST
    # The attacker's one legitimate update counts too; nothing honest was lost.
    assert isinstance(outcome["attack"]["first"], Work)
    assert progress.updates_accepted == HONEST * UPDATES_EACH + 1
    assert outcome["service"].internal_errors == 0
    assert outcome["service"].refused_on_decode["malformed"] >= 2
