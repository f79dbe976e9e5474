"""The binding journal: O(1) per change, and every crash point replays to the same table."""

import json
from ipaddress import IPv4Address as A

import pytest

from mipro.core.bindings import Binding, BindingTable
from mipro.runtime.journal import BindingJournal, _line, _snapshot_chunks


def b(i, coa="198.51.100.9"):
    return Binding(A(f"10.1.0.{i}"), A(coa), A("10.1.0.1"), 600, 2e9, 1e9, i, "ipip", True,
                   f"mn{i}@x", 256, A(coa), 434)


def homes(bindings):
    return sorted(str(x.home_address) for x in bindings)


def test_journal_replays_changes(tmp_path):
    j = BindingJournal(tmp_path / "state.json")
    for i in range(1, 6):
        j.record("install", b(i))
    j.record("remove", b(2))
    j.record("install", b(3, "203.0.113.7"))
    j.flush()
    loaded = BindingJournal(tmp_path / "state.json").load()
    assert homes(loaded) == ["10.1.0.1", "10.1.0.3", "10.1.0.4", "10.1.0.5"]
    assert [x for x in loaded if x.home_address == A("10.1.0.3")][0].care_of_address == \
        A("203.0.113.7")
    assert loaded[0] == b(1)


def test_crash_between_rotate_and_snapshot_loses_nothing(tmp_path):
    j = BindingJournal(tmp_path / "state.json")
    j.record("install", b(1))
    j.record("install", b(2))
    j.rotate()  # compaction started...
    j.record("remove", b(1))
    j.flush()  # ...changes keep coming, and the process dies before write_snapshot
    assert homes(BindingJournal(tmp_path / "state.json").load()) == ["10.1.0.2"]


def test_compaction_and_torn_line(tmp_path):
    j = BindingJournal(tmp_path / "state.json")
    for i in range(1, 4):
        j.record("install", b(i))
    j.rotate()
    j.write_snapshot([b(1), b(2), b(3)])
    assert not j.rotated.exists()
    j.record("remove", b(3))
    j.flush()
    with open(j.journal, "a") as fh:
        fh.write('["+", ["10.1.0.9"')  # the write a crash cut short
    assert homes(BindingJournal(tmp_path / "state.json").load()) == ["10.1.0.1", "10.1.0.2"]


def test_compaction_threshold():
    j = BindingJournal("/nonexistent/state.json")
    j.lines = 10_001
    assert j.needs_compaction(100) and not j.needs_compaction(6_000)


def test_lines_that_are_json_but_not_bindings_are_skipped_and_counted(tmp_path):
    """A damaged line costs that line, not the table (it used to raise, and the HA then
    restored nothing)."""
    j = BindingJournal(tmp_path / "state.json")
    j.record("install", b(1))
    j.record("install", b(2))
    j.flush()
    with open(j.journal, "a") as fh:
        fh.write('["+", ["10.1.0.9"]]\n')  # valid JSON, too short a row
        fh.write('["+", null]\n')
        fh.write('["-", 7]\n')
        fh.write('["-", "not-an-address"]\n')
        fh.write('["?", "10.1.0.1"]\n')
        fh.write('{"op": "+"}\n')
        fh.write('42\n')
        fh.write('\n')
    j.record("install", b(3))
    j.record("remove", b(2))
    j.flush()
    with open(j.journal, "a") as fh:
        fh.write('["+", ["10.1.0.9"')  # and a torn last line
    loaded = BindingJournal(tmp_path / "state.json")
    got = loaded.load()
    assert homes(got) == ["10.1.0.1", "10.1.0.3"]
    assert sorted(got, key=lambda x: x.identification) == [b(1), b(3)]
    assert len(loaded.skipped) == 9, loaded.skipped
    assert loaded.skipped[0].startswith(f"{j.journal}: line 3: ")
    assert j.journal.read_text().count("\n") == 12  # read, not rewritten


def test_a_bad_snapshot_row_loses_only_itself(tmp_path):
    import json

    j = BindingJournal(tmp_path / "state.json")
    j.write_snapshot([b(1), b(2), b(3)])
    data = json.loads(j.snapshot.read_text())
    data["bindings"][1] = data["bindings"][1][:5]
    data["bindings"].insert(0, "garbage")
    j.snapshot.write_text(json.dumps(data))
    j.record("install", b(4))
    j.flush()
    loaded = BindingJournal(tmp_path / "state.json")
    assert homes(loaded.load()) == ["10.1.0.1", "10.1.0.3", "10.1.0.4"]
    assert [s.split(": ")[1] for s in loaded.skipped] == ["binding 1", "binding 3"]


def test_a_snapshot_taken_while_the_table_changes_replays_to_the_table(tmp_path):
    """compact_in_background reads the table a slice at a time after the rotation (a
    fuzzy snapshot); the changes made meanwhile are in the new journal, so a load gives
    the table as it ended, whichever slices saw which change."""
    table = BindingTable()
    j = BindingJournal(tmp_path / "state.json")
    for i in range(1, 41):
        table.put(b(i))
        j.record("install", b(i))
    j.flush()

    def changing_slices():
        for n, piece in enumerate(table.slices()):
            yield piece
            if n == 5:  # 10.1.0.3 already copied, 10.1.0.30 not yet: both changed
                for gone in (b(3), b(30)):
                    table.pop(gone.home_address)
                    j.record("remove", gone)
                for new in (b(7, "203.0.113.7"), b(41), b(200)):
                    table.put(new)
                    j.record("install", new)

    j.compact_in_background(changing_slices).result()
    j.flush()
    j.close()
    assert not j.rotated.exists()
    loaded = {x.home_address: x for x in BindingJournal(tmp_path / "state.json").load()}
    assert loaded == {x.home_address: x for x in table}
    assert loaded[A("10.1.0.7")].care_of_address == A("203.0.113.7")
    assert A("10.1.0.3") not in loaded and A("10.1.0.30") not in loaded


@pytest.mark.parametrize("binding", [
    b(1), Binding(A("10.1.0.2"), A("198.51.100.9"), A("10.1.0.1"), 65534, 1.7e9 + 0.123456,
                  1.7e9, 2**64 - 1, "gre", False, 'q"uo\\te \u00e9\u4e2d', 0, None, 4500)])
def test_journal_lines_are_what_json_dumps_writes(binding):
    assert _line(binding.home_address, binding) == json.dumps(["+", binding.to_row()]) + "\n"
    assert _line(binding.home_address, None) == json.dumps(["-", "10.1.0." + str(
        binding.home_address.packed[3])]) + "\n"


def test_snapshot_text_is_what_json_dumps_writes():
    rows = [b(i) for i in range(5)] + [Binding(A("10.1.0.9"), A("198.51.100.9"),
                                               A("10.1.0.1"), 7, 1.5, 1.0, 3, "gre", True,
                                               "n\u00e9", 9, None, 1)]
    for chunk in (2, 4096):  # chunks split the rows, or all in one
        with pytest.MonkeyPatch.context() as m:
            m.setattr("mipro.runtime.journal.SNAPSHOT_CHUNK", chunk)
            text = "".join(_snapshot_chunks(rows))
        assert text == json.dumps({"version": 2, "bindings": [r.to_row() for r in rows]})
    assert "".join(_snapshot_chunks([])) == json.dumps({"version": 2, "bindings": []})


@pytest.mark.parametrize("text", ["0.0.0.0", "0.0.0.255", "1.2.3.4", "10.128.1.0",
                                  "127.0.0.1", "255.255.255.255", "192.0.2.100"])
def test_dotted_is_str(text):
    from mipro.core.bindings import dotted

    assert dotted(A(text)) == str(A(text)) == text
