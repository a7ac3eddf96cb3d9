"""``tritonllm tune``: the deployment settings with the most goodput under a latency SLO, found by
measuring them.

- :mod:`~tritonllm.tune.space`: which profile keys to vary and their values; which of them need
  a new engine (the build's own stage hashes decide) and a candidate's profile.
- :mod:`~tritonllm.tune.probe`: one load-test run at one request rate, reduced to what the
  search needs (goodput, attainment, which SLO limit the failures broke).
- :mod:`~tritonllm.tune.rate_search`: the highest request rate a candidate serves within the
  SLO, by a bounded bracket-and-bisect search.
- :mod:`~tritonllm.tune.search`: coordinate descent over the space within a time budget, every
  probe journaled so an interrupted run resumes, and the top three re-measured at the end.
- :mod:`~tritonllm.tune.measure`: the real measurement on the CPU twin: a tritonserver started
  with the candidate's profile and Locust's open-loop users against it.
- :mod:`~tritonllm.tune.gpu`: the same on a GPU node, each candidate deployed as the container's
  entrypoint deploys a profile (engines from the engine cache, built when a candidate needs one).
- :mod:`~tritonllm.tune.report`: the ranked table, the Pareto plot and the winning profile.
"""
