"""mipro.lab.expect: json_cmp's semantics, run_and_expect's polling, the scenarios' data."""

import json
import pathlib

import pytest

from mipro.lab.expect import ExpectError, json_cmp, run_and_expect

SCENARIOS = pathlib.Path(__file__).resolve().parents[2] / "netns-lab" / "scenarios"

HA = {"role": "ha", "dataplane": "userspace",
      "bindings": [{"home_address": "10.1.0.100", "care_of_address": "10.0.0.106",
                    "lifetime_left": 118, "encapsulation": "udp",
                    "source": "172.31.2.1:41066", "reverse_tunnel": True,
                    "counters": {"packets_in": 12, "packets_out": 0}}],
      "flood_limit": None}


def test_a_subset_of_an_object_matches():
    assert json_cmp(HA, {}) is None
    assert json_cmp(HA, {"role": "ha"}) is None
    assert json_cmp(HA, {"bindings": [{"home_address": "10.1.0.100"}]}) is None


def test_a_different_value_is_shown_with_its_path():
    diff = json_cmp(HA, {"role": "fa", "bindings": [{"encapsulation": "ipip"}]})
    assert diff == ('role: expected "fa", got "ha"\n'
                    'bindings[0].encapsulation: expected "ipip", got "udp"')


def test_a_missing_key_is_a_mismatch():
    assert json_cmp(HA, {"tunnel_drops": {}}) == "tunnel_drops: missing (expected {})"


def test_null_means_absent_or_null():
    assert json_cmp(HA, {"visitors": None}) is None
    assert json_cmp(HA, {"flood_limit": None}) is None
    assert json_cmp(HA, {"role": None}) == 'role: expected absent or null, got "ha"'


def test_an_optional_key_is_compared_only_when_there():
    want = {"bindings": [{"counters?": {"packets_in": "> 0"}}]}
    assert json_cmp(HA, want) is None
    assert json_cmp({"bindings": [{}]}, want) is None
    assert json_cmp({"bindings": [{"counters": None}]}, want) is None
    assert json_cmp({"bindings": [{"counters": {"packets_in": 0}}]}, want) == \
        "bindings[0].counters.packets_in: expected > 0, got 0"


def test_lists_compare_in_order_and_length():
    assert json_cmp([1, 2], [1, 2]) is None
    assert json_cmp([2, 1], [1, 2]) == "[0]: expected 1, got 2\n[1]: expected 2, got 1"
    assert json_cmp([1, 2, 3], [1, 2]) == "(top): expected 2 element(s), got 3: [1, 2, 3]"
    assert json_cmp({"bindings": []}, {"bindings": []}) is None
    assert json_cmp(HA, {"bindings": []}).startswith("bindings: expected 0 element(s), got 1")


def test_a_subset_list_matches_in_any_order_with_others_allowed():
    visitors = [{"mac": "02:00:00:00:02:00", "zone": 2}, {"mac": "02:00:00:00:01:00", "zone": 1},
                {"mac": "02:00:00:00:03:00", "zone": 3}]
    assert json_cmp(visitors, ["__subset__", {"mac": "02:00:00:00:01:00", "zone": 1},
                               {"mac": "02:00:00:00:02:00"}]) is None
    assert json_cmp([], ["__subset__"]) is None
    assert json_cmp([], ["__subset__", {}]) == "(top): no element matches {} (the array is empty)"
    diff = json_cmp(visitors, ["__subset__", {"mac": "02:00:00:00:01:00", "zone": 2}])
    assert diff == ('(top): no element matches {"mac": "02:00:00:00:01:00", "zone": 2}; '
                    "nearest, [0].mac: expected \"02:00:00:00:01:00\", got \"02:00:00:00:02:00\"")


def test_subset_elements_need_distinct_matches():
    assert json_cmp([{"a": 1}], ["__subset__", {}, {"a": 1}]).startswith(
        "(top): 2 expected element(s) need distinct matches among 1")
    # found by search, not greedily: {} must not take the only {"a": 1}
    assert json_cmp([{"a": 1}, {"b": 2}], ["__subset__", {}, {"a": 1}]) is None


def test_star_is_any_value_but_null():
    assert json_cmp(HA, {"bindings": [{"counters": "*"}], "dataplane": "*"}) is None
    assert json_cmp(HA, {"flood_limit": "*"}) == "flood_limit: expected a value, got null"
    assert json_cmp(HA, {"directory": "*"}) == 'directory: missing (expected "*")'


def test_patterns_match_strings():
    assert json_cmp(HA, {"bindings": [{"source": "172.31.2.1:*",
                                        "care_of_address": "10.0.0.*"}]}) is None
    assert json_cmp(HA, {"bindings": [{"source": "172.31.2.10:*"}]}) == \
        "bindings[0].source: expected to match '172.31.2.10:*', got \"172.31.2.1:41066\""
    assert json_cmp({"n": 5}, {"n": "*5"}) == "n: expected to match '*5', got 5"


def test_comparisons_match_numbers_only():
    b = {"lifetime_left": 118, "n": 1.5, "flag": True, "s": "7"}
    assert json_cmp(b, {"lifetime_left": "<= 120", "n": "> 1"}) is None
    assert json_cmp(b, {"lifetime_left": ">=120"}) == "lifetime_left: expected >=120, got 118"
    assert json_cmp(b, {"lifetime_left": "!= 118"}) == "lifetime_left: expected != 118, got 118"
    assert json_cmp(b, {"flag": "> 0"}) == "flag: expected > 0, got true"
    assert json_cmp(b, {"s": "> 0"}) == 's: expected > 0, got "7"'


def test_booleans_are_not_numbers():
    assert json_cmp({"x": True}, {"x": 1}) == "x: expected 1, got true"
    assert json_cmp({"x": 1}, {"x": True}) == "x: expected true, got 1"
    assert json_cmp({"x": 1}, {"x": 1.0}) is None


def test_types_must_agree():
    assert json_cmp({"b": [1]}, {"b": {}}) == "b: expected an object, got [1]"
    assert json_cmp({"b": {}}, {"b": []}) == "b: expected an array, got {}"


def test_the_diff_is_cut_after_the_limit():
    diff = json_cmp(list(range(20)), [-1] * 20, limit=3)
    assert diff.splitlines() == ["[0]: expected -1, got 0", "[1]: expected -1, got 1",
                                 "[2]: expected -1, got 2", "... and 17 more"]


def test_run_and_expect_polls_until_it_matches():
    answers = iter([OSError("no socket yet"), {"state": "idle"}, {"state": "registered"}])

    def status():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer
    got = run_and_expect(status, {"state": "registered"}, 5, "registration", interval=0.001)
    assert got == {"state": "registered"}


def test_run_and_expect_times_out_with_the_diff():
    with pytest.raises(ExpectError) as err:
        run_and_expect(lambda: {"state": "idle"}, {"state": "registered"}, 0.05,
                       "registration", interval=0.01, scale=2)
    assert str(err.value) == ('timed out after 0.1s waiting for registration:\n'
                              '  state: expected "registered", got "idle"')
    with pytest.raises(ExpectError, match="could not get the state: ConnectionRefusedError"):
        run_and_expect(lambda: (_ for _ in ()).throw(ConnectionRefusedError()), {}, 0.01, "x")


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*/expect.json")),
                         ids=lambda p: p.parent.name)
def test_scenario_expectations_are_readable_data(path):
    """Each phase says what it means and names services of its scenario."""
    import tomllib

    phases = json.loads(path.read_text())
    services = {s["name"] for s in
                tomllib.loads((path.parent / "scenario.toml").read_text())["service"]}
    assert phases
    for name, phase in phases.items():
        assert isinstance(phase.get("about"), str) and phase["about"], name
        named = set(phase) - {"about"}
        assert named and named <= services, (name, named - services)
        assert all(isinstance(phase[s], dict) for s in named), name


def test_lab_waits_for_a_phase_of_its_scenario(tmp_path, monkeypatch):
    """Lab.expect / expect_phase / matches against netns-lab/scenarios/nat/expect.json,
    with the daemons' answers made up (no namespaces)."""
    from mipro.lab import Lab

    lab = Lab("nat", out=tmp_path / "nat")
    answers = {"mn": [{"state": "registering"}, {"state": "registered"}],
               "ha": [{"bindings": []}, HA]}
    monkeypatch.setattr(lab, "status", lambda s: answers[s][0] if len(answers[s]) == 1
                        else answers[s].pop(0))
    assert lab.matches("registered") == {}  # the first answers: not yet
    got = lab.expect_phase("registered", 5)
    assert got == {"mn": {"state": "registered"}, "ha": HA}
    assert lab.matches("registered", services=("ha",)) == {"ha": HA}
    assert lab.expect("ha", "registered") is HA
    assert lab.expect("mn", {"state": "registered"}) == {"state": "registered"}
    assert set(lab.expected("registered")) == {"mn", "ha"}  # "about" is no service
    with pytest.raises(ExpectError, match="waiting for nat: phase 'registered':\n  "
                       "ha.bindings: no element matches"):
        answers["ha"] = [{"bindings": [{"home_address": "10.1.0.100",
                                        "encapsulation": "ipip"}]}]
        lab.expect_phase("registered", 0.05)
