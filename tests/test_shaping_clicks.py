"""Clicks: one parse rule, one bounds check, no negative classes, the deepest pixel of each region."""

import pytest
import torch

from priors3d import cli
from priors3d.fields.views import Views
from priors3d.shaping.clicks import Click, auto_clicks, click_labels, dense_clicks, object_clicks


def test_parse_reads_the_labelled_and_the_unlabelled_form():
    assert Click.parse("0/4/4/3") == Click(0, 4, 4, 3)
    assert Click.parse("2/5/1", labelled=False) == Click(2, 5, 1)
    with pytest.raises(ValueError, match=r"'view/x/y/class' \(four integers separated by '/'\), got '1/2/3'"):
        Click.parse("1/2/3")
    with pytest.raises(ValueError, match=r"'view/x/y' \(three integers separated by '/'\), got '1/2/3/4'"):
        Click.parse("1/2/3/4", labelled=False)
    with pytest.raises(ValueError, match="four integers"):
        Click.parse("1/2/x/0")


def test_select_asks_for_three_integers(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["field", "select", str(tmp_path), "--click", "44-9-40"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "a click must be 'view/x/y' (three integers separated by '/'), got '44-9-40'" in err, err


def test_a_negative_class_is_a_clear_error():
    with pytest.raises(ValueError, match=r"class must be 0 or more \(-1 marks void pixels\), got -1"):
        Click.parse("0/1/2/-1")
    with pytest.raises(ValueError, match="class must be 0 or more"):
        Click(0, 1, 2, -3)
    with pytest.raises(ValueError, match="every click needs a class"):
        click_labels([Click(0, 1, 2, 1), Click(0, 1, 2)])
    assert click_labels([Click(0, 1, 2, 1), Click(1, 0, 0, 0)]).tolist() == [1, 0]


def test_clicks_outside_the_views_are_rejected():
    views = Views(torch.zeros(2, 4, 6, 3), torch.eye(4).repeat(2, 1, 1), torch.ones(2, 4), ["a", "b"])
    Click(1, 5, 3).check(views)  # the last pixel of the last view
    for bad in (Click(2, 0, 0), Click(0, 6, 0), Click(0, 0, 4), Click(-1, 0, 0), Click(0, -1, 0), Click(0, 0, -1)):
        with pytest.raises(ValueError, match=f"{bad.view}/{bad.x}/{bad.y} is outside the 2 views of 6x4 pixels"):
            bad.check(views)


def test_auto_clicks_pick_the_deepest_pixel_and_dense_clicks_cover_the_view():
    labels = torch.full((2, 9, 9), -1)
    labels[1, 3:8, 0:5] = 3  # 5x5 square: centre x=2, y=5
    labels[1, 0:3, 6:9] = 0  # 3x3 square: centre x=7, y=1
    labels[0, 0:3, 0:3] = 3  # view 1 shows more classes
    assert auto_clicks(labels) == [Click(1, 7, 1, 0), Click(1, 2, 5, 3)]
    assert auto_clicks(labels, view=0) == [Click(0, 1, 1, 3)]
    assert len(dense_clicks(labels, 1)) == 25 + 9 and len(dense_clicks(labels, 0)) == 9


def test_object_clicks_pick_the_deepest_interior_pixel():
    instance = torch.full((2, 12, 12), -1, dtype=torch.long)
    instance[0, 2:7, 2:7] = 0  # 5x5 square: centre (4, 4)
    instance[1, 1:10, 1:10] = 0  # 9x9 square in view 1: larger, wins unless view 1 is excluded
    instance[1, 0:3, 10:12] = 1
    clicks = object_clicks(instance)
    assert clicks[0] == Click(1, 5, 5, 0) and clicks[1].view == 1 and clicks[1].label == 1
    assert object_clicks(instance, [0]) == [Click(0, 4, 4, 0)]
    with pytest.raises(ValueError, match=r"\[V, H, W\]"):
        object_clicks(instance[0])
