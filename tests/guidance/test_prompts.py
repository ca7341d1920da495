"""parse_prompts: the 'text:weight:stop | ...' syntax."""

import math

import pytest

from clipag_plugin.guidance.prompts import Prompt, parse_prompt, parse_prompts


def test_single_text_defaults():
    assert parse_prompts("a red barn") == [Prompt("a red barn", 1.0, -math.inf)]


def test_weights_stops_and_negative():
    got = parse_prompts("a red barn:1 | blurry:-0.3 | sky:0.5:0.2")
    assert got == [Prompt("a red barn", 1.0), Prompt("blurry", -0.3), Prompt("sky", 0.5, 0.2)]


def test_list_and_prompt_objects():
    got = parse_prompts(["a:2", Prompt("b", -1.0)])
    assert got == [Prompt("a", 2.0), Prompt("b", -1.0)]


def test_colon_in_text_kept_when_not_numeric():
    assert parse_prompt("time: noon").text == "time: noon"
    # a numeric field inside the text needs weight and stop spelled out (VQGAN+CLIP's rsplit)
    assert parse_prompt("ratio 16:9:1:-inf") == Prompt("ratio 16:9", 1.0)


def test_prompt_is_frozen():
    with pytest.raises(AttributeError):  # FrozenInstanceError
        parse_prompt("a").weight = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["", "   ", "a | ", "| b", ":1", "x:1.x", "x:nan"])
def test_bad_syntax_raises_value_error(bad):
    with pytest.raises(ValueError):
        parse_prompts(bad)


def test_non_string_raises():
    with pytest.raises(ValueError):
        parse_prompts([3])
