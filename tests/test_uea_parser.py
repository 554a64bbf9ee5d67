"""The archive reader of benchmarks/uea.py: .ts text to the long cases table."""

import numpy as np
import pytest

from benchmarks import uea

TS = """# a comment line, then the header
@problemName Tiny
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down

@data
1,2,3:4,5,6:up
7,8:9,?:down
0.5,1.5,2.5,3.5:-1,-2,-3,-4:up
"""


def test_a_ts_file_of_unequal_cases_becomes_one_row_per_case_and_step():
    cases, labels, header = uea.parse_ts(TS)
    assert header["problemname"] == "Tiny" and header["equallength"] == "false"
    assert labels == ["up", "down", "up"] and [c.shape for c in cases] == [(2, 3), (2, 2), (2, 4)]
    assert np.isnan(cases[1][1, 1]) and cases[1][1, 0] == 9
    table = uea.long_table(cases, labels, split="train", prefix="train")
    assert list(table.columns) == ["case", "step", "c0", "c1", "label", "split"]
    assert table["case"].tolist() == ["train00000"] * 3 + ["train00001"] * 2 + ["train00002"] * 4
    assert table["step"].tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert table["c0"].dtype == np.float32 and table["c1"].tolist()[:3] == [4, 5, 6]
    assert table.groupby("case")["label"].nunique().eq(1).all() and (table["split"] == "train").all()


def test_a_case_whose_channels_differ_in_length_or_a_regression_set_is_refused():
    with pytest.raises(ValueError, match="line 3: 2 channels of lengths \\[2, 3\\]"):
        uea.parse_ts("@classLabel true a b\n@data\n1,2:3,4,5:a\n")
    with pytest.raises(ValueError, match="regression"):
        uea.parse_ts("@targetLabel true\n@classLabel false\n@data\n1,2:0.5\n")
