"""Property tests that show their interesting case ran.

A hypothesis property whose assertions sit in a loop or a branch passes unseen when no
generated example reaches them (a loop over flips that never happen checks nothing). Count,
per case, the examples that reached it, then require a share of the run to have::

    reached = Reached()

    @settings(max_examples=60)
    @given(...)
    def prop(...):
        ...
        reached("two flips", len(flips) >= 2)

    prop()
    reached.at_least({"two flips": 10})
"""

from __future__ import annotations

from collections import Counter


class Reached:
    """How many examples of one hypothesis run reached each named case."""

    def __init__(self) -> None:
        self.examples: Counter[str] = Counter()

    def __call__(self, case: str, hit: bool = True) -> bool:
        self.examples[case] += bool(hit)
        return hit

    def at_least(self, minimum: dict[str, int]) -> None:
        """Fails naming the cases fewer than ``minimum[case]`` examples reached."""
        short = {c: self.examples[c] for c, m in minimum.items() if self.examples[c] < m}
        assert not short, f"cases reached by too few examples: {short} (wanted {minimum})"
