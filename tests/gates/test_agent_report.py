"""The look-ahead of the graduation rule agrees with recording the uses one by one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from auto_dev.gates import GraduationSettings, wilson_lower_bound
from auto_dev.gates._maturity import evidence_of
from auto_dev.gates.agent_report import failures_to_demote, successes_to_graduate

_use = st.tuples(st.booleans(), st.booleans())


@st.composite
def _rules(draw: st.DrawFn) -> GraduationSettings:
    demote = draw(st.sampled_from([0.1, 0.3, 0.5]))
    return GraduationSettings(
        min_verified_successes=draw(st.integers(1, 12)),
        promote_lower_bound=draw(st.sampled_from([0.55, 0.7, 0.8, 0.95])),
        demote_lower_bound=demote,
        min_samples_for_demotion=draw(st.integers(1, 12)),
        confidence=draw(st.sampled_from([0.8, 0.95])),
        window=draw(st.integers(1, 30)),
    )


def _brute_force(history: list[tuple[bool, bool]], rule: GraduationSettings,
                 use: tuple[bool, bool], up: bool) -> int | None:
    """Prepend uses one at a time and judge the newest ``window``, as graduation would."""
    for count in range(1, rule.window + 2):
        ev = evidence_of(([use] * count + history)[:rule.window], rule.confidence)
        if up and ev.successes >= rule.min_verified_successes \
                and ev.lower_bound >= rule.promote_lower_bound:
            return count
        if not up and ev.samples >= rule.min_samples_for_demotion \
                and ev.lower_bound < rule.demote_lower_bound:
            return count
    return None


class TestLookAhead:
    """``successes_to_graduate`` and ``failures_to_demote`` match the rule applied step by step."""

    @settings(max_examples=300)
    @given(history=st.lists(_use, max_size=40), rule=_rules())
    def test_matches_step_by_step(self, history: list[tuple[bool, bool]],
                                  rule: GraduationSettings) -> None:
        """For any history and rule, the counts equal the first step where the rule moves."""
        kept = history[:rule.window]
        assert successes_to_graduate(kept, rule) == _brute_force(kept, rule, (True, True), True)
        assert failures_to_demote(kept, rule) == _brute_force(kept, rule, (False, True), False)

    def test_default_rule_from_nothing(self) -> None:
        """With the defaults and no evidence: 16 successes in a row, or 10 failures."""
        rule = GraduationSettings()
        assert successes_to_graduate([], rule) == 16
        assert wilson_lower_bound(15, 15) < 0.8 <= wilson_lower_bound(16, 16)
        assert failures_to_demote([], rule) == 10

    def test_unreachable_when_window_is_too_small(self) -> None:
        """A window smaller than the successes required can never graduate anyone."""
        rule = GraduationSettings(min_verified_successes=20, window=10)
        assert successes_to_graduate([], rule) is None
