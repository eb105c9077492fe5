"""The checker (Jepsen's sense): judges whether the answers clients got were correct, not just whether
they came. The simulated chain is a pure function of (chain id, genesis time, block time), so the lab knows
the right answer to every request it sends.

Load side: `AnswerInspector.inspect` turns one successful answer into the run record's checker columns
(`answer_block`, `check`, `check_detail`). Analysis side: staleness, head regressions per client and the
report's anomalies are computed from those columns.
"""

from lab.checker.answers import AnswerInspector

__all__ = ["AnswerInspector"]
