"""AddressMap behaves as the dict it replaces, whatever the order of operations."""

import random
from ipaddress import IPv4Address as A

import pytest

from mipro.core.addressmap import AddressMap


def test_random_operations_match_a_dict():
    rng = random.Random(15)
    keys = [A(f"10.{rng.randrange(4)}.{rng.randrange(4)}.{rng.randrange(256)}")
            for _ in range(300)]
    model: dict = {}
    m: AddressMap = AddressMap()
    for step in range(20_000):
        k = A(str(rng.choice(keys)))  # equal to, not the same object as, the stored key
        op = rng.randrange(6)
        if op == 0:
            m[k] = model[k] = step
        elif op == 1:
            assert m.pop(k, None) == model.pop(k, None)
        elif op == 2:
            assert m.setdefault(k, step) == model.setdefault(k, step)
        elif op == 3:
            assert m.get(k) == model.get(k) and (k in m) == (k in model)
        elif op == 4 and k in model:
            del m[k], model[k]
        elif op == 5 and k in model:
            assert m[k] == model[k]
        assert len(m) == len(model)
    assert m == model and dict(m.items()) == model
    assert sorted(m) == sorted(model) and sorted(m.values()) == sorted(model.values())
    assert sorted(v for piece in m.slices() for v in piece) == sorted(model.values())


def test_missing_keys_and_clear():
    m = AddressMap({A("10.0.0.1"): 1})
    with pytest.raises(KeyError):
        m.pop(A("10.0.0.2"))
    with pytest.raises(KeyError):
        m[A("10.0.0.2")]
    assert "10.0.0.1" not in m and A("10.0.0.1") in m
    m.clear()
    assert len(m) == 0 and m == {} and list(m) == []


def test_changing_the_map_while_iterating_is_safe():
    """Status and snapshots iterate while the loop changes the map: no RuntimeError."""
    m = AddressMap({A(f"10.0.{i}.{j}"): j for i in range(2) for j in range(256)})
    for n, _ in enumerate(m.values()):
        m[A(f"10.9.0.{n % 256}")] = n
    assert len(m) == 768
