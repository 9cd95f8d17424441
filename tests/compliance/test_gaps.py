"""agent.compliance.gaps: interruptions and device stops in one hand-out (Art. 8, 12)."""

from __future__ import annotations

from typing import Any

from agent.compliance.gaps import DEVICE_STOP_SLACK_MS, RecordingSpan, find_gaps

MIN = 60_000


def rec(name: str, start_min: int, end_min: int) -> RecordingSpan:
    return RecordingSpan(name, start_min * MIN, end_min * MIN)


def entry(seq: int, at_ms: int, kind: str = "battery_empty", rid: str | None = None
          ) -> dict[str, Any]:
    return {"seq": seq, "at_ms": at_ms, "kind": kind, "recording_id": rid, "detail": ""}


def test_no_recordings_no_gaps() -> None:
    assert find_gaps("c", [], [], threshold_ms=MIN, hand_in_ms=None) == []


def test_interruption_over_threshold_only() -> None:
    spans = [rec("a", 0, 10), rec("b", 11, 20), rec("c", 40, 50)]
    (gap,) = find_gaps("c", spans, [], threshold_ms=5 * MIN, hand_in_ms=60 * MIN)
    assert (gap.kind, gap.before_recording, gap.after_recording, gap.explained) == (
        "interruption", "b", "c", False)
    assert (gap.from_ms, gap.to_ms) == (20 * MIN, 40 * MIN)


def test_storage_full_inside_an_interruption_explains_it() -> None:
    spans = [rec("a", 0, 10), rec("b", 40, 50)]
    full = entry(1, 25 * MIN, "storage_full")
    (gap,) = find_gaps("c", spans, [full, entry(2, 5 * MIN, "record_start")],
                       threshold_ms=5 * MIN, hand_in_ms=None)
    assert gap.kind == "interruption" and gap.evidence == (full,)


def test_a_named_stop_belongs_to_its_recording_only() -> None:
    spans = [rec("a", 0, 10), rec("b", 10, 11)]  # b ends within the slack of a's stop
    stop = entry(1, 10 * MIN, "fault", rid="a")
    gaps = find_gaps("c", spans, [stop], threshold_ms=5 * MIN, hand_in_ms=30 * MIN)
    assert [(g.kind, g.before_recording, g.to_ms) for g in gaps] == [
        ("device_stop", "a", 10 * MIN)]


def test_anonymous_stop_near_the_end_and_the_last_recording() -> None:
    spans = [rec("a", 0, 10)]
    stop = entry(1, 10 * MIN + DEVICE_STOP_SLACK_MS)
    (gap,) = find_gaps("c", spans, [stop], threshold_ms=5 * MIN, hand_in_ms=90 * MIN)
    assert (gap.kind, gap.after_recording, gap.to_ms, gap.explained) == (
        "device_stop", None, 90 * MIN, True)
    far = entry(1, 10 * MIN + DEVICE_STOP_SLACK_MS + 1)
    assert find_gaps("c", spans, [far], threshold_ms=5 * MIN, hand_in_ms=90 * MIN) == []


def test_gap_ids_are_stable() -> None:
    spans = [rec("a", 0, 10), rec("b", 40, 50)]
    one = find_gaps("cam", spans, [], threshold_ms=MIN, hand_in_ms=None)
    two = find_gaps("cam", list(reversed(spans)), [], threshold_ms=MIN, hand_in_ms=None)
    assert [g.gap_id for g in one] == [g.gap_id for g in two]
    assert find_gaps("other", spans, [], threshold_ms=MIN, hand_in_ms=None)[0].gap_id != (
        one[0].gap_id)
