import numpy as np

from detector.warmstart.prometheus import parse_matrix, selector_of


def test_selector_quotes_values_exactly():
    labels = (("__name__", "up"), ("path", 'a"b\\c\nd'))
    assert selector_of(labels) == '{__name__="up", path="a\\"b\\\\c\\nd"}'


def test_parse_matrix_sorts_and_keeps_special_values():
    result: list[dict[str, object]] = [
        {
            "metric": {"__name__": "x"},
            "values": [[1700000001.5, "2"], [1700000000.25, "NaN"], [1700000002, "+Inf"]],
        }
    ]
    ts, bits = parse_matrix(result)
    assert ts.tolist() == [1700000000250, 1700000001500, 1700000002000]
    values = bits.view(np.float64)
    assert np.isnan(values[0]) and values[1] == 2.0 and np.isinf(values[2])
