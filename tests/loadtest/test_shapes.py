import pytest

from tritonllm.loadtest.shapes import Ramp, Soak, Spike, Step, parse_params


def test_ramp():
    shape = Ramp(users=4, ramp=10.0, hold=5.0)
    assert [shape.users_at(t) for t in (0, 2.5, 5, 9.9, 10, 14.9)] == [1, 1, 2, 3, 4, 4]
    assert shape.users_at(15) is None


def test_step():
    shape = Step(start=1, step=2, every=10.0, users=6, hold=5.0)
    assert shape.duration == 3 * 10 + 5  # 1 -> 3 -> 5 -> 6 (capped)
    assert [shape.users_at(t) for t in (0, 10, 20, 30, 34)] == [1, 3, 5, 6, 6]
    assert shape.users_at(35) is None


def test_spike_and_soak():
    spike = Spike(base=1, peak=8, at=20.0, length=10.0, duration=40.0)
    assert [spike.users_at(t) for t in (0, 19.9, 20, 29.9, 30)] == [1, 1, 8, 8, 1]
    assert spike.users_at(40) is None
    soak = Soak(users=2, ramp=10.0, duration=100.0)
    assert soak.users_at(50) == 2 and soak.users_at(100) is None


def test_params_with_units_and_errors():
    assert parse_params(Ramp, "users=8, ramp=2m,hold=500ms") == Ramp(8, 120.0, 0.5)
    with pytest.raises(ValueError, match="key of the Ramp shape: users, ramp, hold"):
        parse_params(Ramp, "peak=3")
    with pytest.raises(ValueError, match="Ramp.users"):
        parse_params(Ramp, "users=x")
    with pytest.raises(ValueError, match="Step"):
        Step(start=5, users=4)
    with pytest.raises(ValueError, match="Spike"):
        Spike(duration=10.0)
