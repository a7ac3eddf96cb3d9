"""The engine's counters over a load-test run: differences and speculation's ratios."""

from tritonllm.loadtest.report import markdown
from tritonllm.loadtest.server_counts import COUNTED, difference
from tritonllm.loadtest.metrics import summarize


def test_differences_and_ratios():
    before = dict.fromkeys(COUNTED, 10.0)
    after = {**before, "generated_tokens": 110.0, "steps": 60.0, "spec_drafts": 30.0,
             "spec_draft_tokens": 70.0, "spec_accepted_tokens": 45.0}
    moved = difference(before, after)
    assert moved["generated_tokens"] == 100 and moved["steps"] == 50
    assert moved["spec_acceptance_rate"] == round(35 / 60, 3)
    assert moved["spec_mean_accepted_length"] == round(35 / 20, 3)
    assert difference(before, before)["spec_acceptance_rate"] is None


def test_the_summary_names_them():
    text = markdown(summarize([]), {"label": "x", "server": {"steps": 5,
                                                              "spec_acceptance_rate": None}},
                    None)
    assert "- server: steps 5" in text and "None" not in text.split("- server:")[1].split("\n")[0]
