"""The answers' wording table: every sentence renders with each of its verdicts' wordings."""

import itertools
from string import Template

import pytest

from featuregen_assets.research.answer_text import CHOICES, SENTENCES, say


def _names(text: str) -> set[str]:
    return set(Template(text).get_identifiers())


@pytest.mark.parametrize("sentence", SENTENCES)
def test_each_sentence_renders_with_every_wording_of_its_verdicts(sentence):
    names = _names(SENTENCES[sentence])
    verdicts = sorted(names & CHOICES.keys())
    inner = set().union(*(_names(w) for v in verdicts for w in CHOICES[v].values()))
    plain = {name: f"<{name}>" for name in (names | inner) - CHOICES.keys()}
    for picked in itertools.product(*(CHOICES[v] for v in verdicts)):
        said = say(sentence, **plain, **dict(zip(verdicts, picked, strict=True)))
        assert "$" not in said
        for name in names - CHOICES.keys():
            assert f"<{name}>" in said


def test_every_verdict_is_said_by_some_sentence():
    used = set().union(*(_names(text) for text in SENTENCES.values()))
    assert CHOICES.keys() <= used


def test_a_verdict_it_does_not_know_or_a_missing_figure_fails():
    with pytest.raises(KeyError, match="certain"):
        say("swap_pairs", swap="0.5 [0.4, 0.6]", swap_verdict="certain")
    with pytest.raises(KeyError, match="swap"):
        say("swap_pairs", swap_verdict="binds")
