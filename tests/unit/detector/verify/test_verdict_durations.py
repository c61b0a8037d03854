"""A verification request (spec file or POST /api/v1/verify body) takes its windows as
seconds or Prometheus durations, like every other seconds field."""

import pytest
from pydantic import ValidationError

from detector.verify.verdict import VerifyRequest


def test_windows_take_durations():
    req = VerifyRequest.model_validate(
        {
            "selector": 'job="shop"',
            "change_time": "2026-12-07T14:00:00Z",
            "baseline_s": "1h",
            "observe_s": "15m",
            "skip_s": "30s",
            "step_s": 15,
        }
    )
    assert (req.baseline_s, req.observe_s, req.skip_s, req.step_s) == (3600, 900, 30, 15)


def test_a_bad_window_is_refused_with_the_reason():
    with pytest.raises(ValidationError, match="units must go from largest"):
        VerifyRequest.model_validate({"selector": 'job="shop"', "observe_s": "15m1h"})
    with pytest.raises(ValidationError, match="less than or equal to 86400"):
        VerifyRequest.model_validate({"selector": 'job="shop"', "observe_s": "2d"})
