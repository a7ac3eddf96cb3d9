"""``tritonllm soak``: minutes of mixed traffic against a running server, with every request
accounted for, then the server's health after it (KV cache back to full, RSS growth).

Modules, one job each: :mod:`.tally` (outcomes and the books), :mod:`.kinds` (the request
kinds and their mix), :mod:`.procs` (the server's processes and their RSS from ``/proc``),
:mod:`.runner` (workers, sampling, the end checks), :mod:`.report` (table, JSON, PNG),
:mod:`.cli` (the subcommand). A benchmark: not part of ``make test``.
"""
