"""The subscriber file read fast (groups of tables, the usual shape checked directly) gives
what the plain reading (tomllib, the Checker for every table) gives: the same
subscribers, or the same errors."""

import random

import pytest

from mipro.config import ConfigError
from mipro.subscribers import file_store
from mipro.subscribers.file_store import GROUP, load_subscribers
from mipro.subscribers.model import Associations

KEY = "hex:" + "ab" * 16


def table(i, **over):
    t = {"home_address": f'"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"',
         "sa": f'[{{ spi = {256 + i}, key = "{KEY}" }}]'}
    t.update(over)
    return "[[subscriber]]\n" + "".join(f"{k} = {v}\n" for k, v in t.items() if v is not None)


VARIANTS = [
    {}, {"nai": '"mn@example.org"'}, {"max_lifetime": "600"}, {"replay": '"nonce"'},
    {"sa": f'[{{ spi = 300, key = "{KEY}", algorithm = "hmac-sha256" }}, '
           f'{{ spi = 301, key = "text:0123456789abcdef" }}]'},
    {"routes": '[{ destination = "198.51.100.0/24" }]'},
    # wrong, each in its own way
    {"home_address": '"10.1.2.300"'}, {"home_address": "7"}, {"home_address": None},
    {"home_address": '"010.1.2.3"'}, {"nai": "true"}, {"max_lifetime": "0"},
    {"max_lifetime": "65535"}, {"max_lifetime": "true"}, {"replay": '"sometimes"'},
    {"replay": "[1]"}, {"sa": None}, {"sa": "[]"}, {"sa": '"x"'}, {"sa": "[1]"},
    {"sa": f'[{{ spi = 255, key = "{KEY}" }}]'}, {"sa": f'[{{ spi = true, key = "{KEY}" }}]'},
    {"sa": '[{ spi = 300, key = "hex:abcd" }]'}, {"sa": '[{ spi = 300, key = "hex:zz" }]'},
    {"sa": '[{ spi = 300, key = "rot13:abcdefghijklmnopq" }]'},
    {"sa": f'[{{ spi = 300, key = "{KEY}", algorithm = "md4" }}]'},
    {"sa": f'[{{ spi = 300, key = "{KEY}", colour = "red" }}]'},
    {"filters": '[{ action = "drop", dport = 22 }]'}, {"unknown": "1"},
]


def outcome(read, path):
    try:
        store = read(path)
    except ConfigError as exc:
        return ("errors", exc.errors)
    return ("subscribers", sorted((s.home_address, s.nai, dict(s.associations), s.max_lifetime,
                                   s.replay, s.routes, s.filters)
                                  for s in (store if isinstance(store, list) else [])))


def write(tmp_path, text):
    p = tmp_path / "subscribers.toml"
    p.write_text(text)
    p.chmod(0o600)
    return p


@pytest.mark.parametrize("seed", range(12))
def test_fast_and_plain_reading_agree(tmp_path, seed):
    r = random.Random(seed)
    n = r.choice([3, GROUP - 1, GROUP + 5])
    parts = [table(i, **(r.choice(VARIANTS) if r.random() < 0.3 else {})) for i in range(n)]
    if r.random() < 0.5:  # the same home address twice
        parts.append(table(r.randrange(n)))
    p = write(tmp_path, "# subscribers\n" + "".join(parts))

    def fast(path):
        got = file_store._load_grouped(path)
        assert got is not None  # a plain list of tables: read the fast way
        return got

    assert outcome(fast, p) == outcome(file_store._load_plain, p)


def test_a_subscriber_line_in_a_string_is_read_the_plain_way(tmp_path):
    """A group boundary inside a multi-line string: that group does not parse alone."""
    text = "".join(table(i) for i in range(GROUP)) + 'nai = """multi\n[[subscriber]]\nline"""\n'
    p = write(tmp_path, text + table(GROUP))
    assert file_store._load_grouped(p) is None
    store = load_subscribers(p)
    assert len(store) == GROUP + 1
    assert [s.nai for s in store.by_home.values()].count("multi\n[[subscriber]]\nline") == 1


def test_other_tables_and_bad_toml_are_read_the_plain_way(tmp_path):
    assert file_store._load_grouped(write(tmp_path, "x = 1\n" + table(1))) is None
    bad = write(tmp_path, table(1) + "home_address = \n")
    assert file_store._load_grouped(bad) is None
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_subscribers(bad)


def test_errors_name_the_subscriber_across_groups(tmp_path):
    n = 2 * GROUP + 7
    bad = 2 * GROUP + 3
    parts = [table(i, max_lifetime="0" if i == bad else None) for i in range(n)]
    with pytest.raises(ConfigError) as exc:
        load_subscribers(write(tmp_path, "".join(parts)))
    assert exc.value.errors == [f"{tmp_path}/subscribers.toml: subscriber.{bad}.max_lifetime: "
                                "0 is below the minimum 1"]


def test_associations_are_a_mapping_by_spi():
    from mipro.security import SecurityAssociation

    a, b = SecurityAssociation(256, b"k" * 16), SecurityAssociation(300, b"j" * 16)
    sas = Associations([a, b])
    assert sas == {256: a, 300: b} and {256: a, 300: b} == sas
    assert sas[300] is b and sas.get(301) is None and 256 in sas and 257 not in sas
    assert list(sas) == [256, 300] and len(sas) == 2
    with pytest.raises(KeyError):
        sas[257]
