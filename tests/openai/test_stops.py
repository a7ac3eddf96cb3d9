from __future__ import annotations

import pytest

from tritonllm.openai.stops import StopScanner


def run(stops, deltas):
    scanner, out = StopScanner(stops), []
    for delta in deltas:
        text, matched = scanner.feed(delta)
        out.append(text)
        if matched:
            return out, True
    out.append(scanner.flush())
    return out, False


def test_no_stops_passes_every_delta_through_at_once():
    assert run((), ["a", "b", ""]) == (["a", "b", "", ""], False)


def test_text_ends_before_a_stop_split_across_deltas():
    out, matched = run(["Paris"], ["The capital is Pa", "ris. And more"])
    assert matched and "".join(out) == "The capital is "


def test_a_possible_stop_prefix_is_held_back_then_released():
    out, matched = run(["###"], ["a#", "#b", "c"])
    assert not matched and "".join(out) == "a##bc"
    assert out[0] == "" and out[1] == "a#"  # never more than len(stop) - 1 held


def test_the_earliest_stop_wins():
    out, matched = run(["world", "lo"], ["hello world"])
    assert matched and out == ["hel"]


def test_feeding_after_a_match_and_empty_stops_are_errors():
    scanner = StopScanner(["x"])
    assert scanner.feed("axb") == ("a", True)
    with pytest.raises(ValueError, match="feed"):
        scanner.feed("more")
    with pytest.raises(ValueError, match="stops"):
        StopScanner([""])
