"""The stateful engine fuzzer (bench/fuzz_engines.py), short: a few thousand steps per engine
with a fixed seed, every invariant checked after every engine call.  `make fuzz` runs
1,000,000 steps per engine."""

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "fuzz_engines.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_engines", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


STEPS = 8000
SEED = 20261126


@pytest.mark.parametrize("engine", ["ha", "fa", "mn"])
def test_no_invariant_breaks(fuzz, engine):
    try:
        stats = fuzz.run([engine], STEPS, SEED)
    except fuzz.FuzzFailure as failure:  # the report went to stderr
        pytest.fail(f"{failure.invariant}: {failure.detail}")
    assert stats.steps[engine] == STEPS
    checks = stats.checks
    # the deep paths were reached, not only the decoders' refusals
    coarse = stats.coarse[engine]
    if engine == "ha":
        assert coarse["accepted"] and coarse["deregistered"] and coarse["denied 133"]
        assert coarse["denied 131"] and coarse["kernel refused: denied 130"]
        assert checks["ha.denial_exception_challenge"] and checks["ha.denial_exception_first_nonce"]
        assert checks["ha.parks_only_this_request"] and checks["ha.restore_keeps_live_bindings"]
    elif engine == "fa":
        assert coarse["reply relayed: visitor accepted"] and coarse["binding update accepted"]
        assert checks["fa.forged_reply_changes_nothing"] and checks["fa.notification_only_under_mn_fa"]
        assert checks["fa.unverified_update_changes_nothing"]
        assert checks["fa.visitor_routes_are_covered_nvses"] > 100
    else:
        assert coarse["accepted"] and checks["mn.tunnel_routes_are_covered_nvses"]
        assert any("OwnAddressOut(True)" in k for k in stats.outcomes["mn"])
        assert checks["mn.unauthentic_reply_changes_nothing"] > 1000
    assert checks["world.bounded_exchange"] and checks[f"{engine}.no_exception"] == stats.calls[engine]


def test_a_seed_repeats_itself(fuzz):
    """A failure is reproduced from its seed and episode: the engines' randomness is seeded
    while fuzzing, so the same seed makes the same run."""
    runs = [fuzz.run(["fa"], 1500, 7) for _ in range(2)]
    assert runs[0].outcomes == runs[1].outcomes and runs[0].checks == runs[1].checks


def test_a_broken_invariant_is_reported(fuzz, monkeypatch, tmp_path, capsys):
    """The checks catch a real breach: a foreign agent that takes routes from after the
    FA-HA authenticator fails at once, with seed, episode, operations and the input saved."""
    from mipro.core import fa as fa_module

    def after(self, reply, visitor):
        checked = original(self, reply, visitor)
        mn_ha = reply.find(fa_module.MnHaAuth)
        if checked is None or mn_ha is None:
            return checked
        return checked[0], reply.after(mn_ha)

    original = fa_module.ForeignAgent._check_ha
    monkeypatch.setattr(fa_module.ForeignAgent, "_check_ha", after)
    with pytest.raises(fuzz.FuzzFailure) as failure:
        fuzz.run(["fa"], 5000, SEED, out_dir=tmp_path)
    assert failure.value.invariant.startswith("fa.")
    report = capsys.readouterr().err
    assert "INVARIANT VIOLATED" in report and "--episode" in report
    assert list(tmp_path.glob("fa-seed*.hex"))
