"""StopChecker: stop strings over streamed text, cut exactly, never emitted (pure Python)."""
import random

from llmkit.models.stops import StopChecker


def feed_all(stops, pieces):
    sc = StopChecker(stops)
    out = []
    for p in pieces:
        text, stopped = sc.feed(p)
        out.append(text)
        if stopped:
            return "".join(out), True
    return "".join(out) + sc.flush(), False


def test_stop_split_across_pieces_is_caught_and_never_emitted():
    sc = StopChecker(["lo w"])
    assert sc.feed("Hel") == ("He", False)       # "l" could start "lo w": held back
    assert sc.feed("lo wo") == ("l", True)       # "Hel" + "lo wo" → cut before "lo w"
    assert sc.feed("rld") == ("", True)
    assert sc.text == "Hel"


def test_held_text_is_released_when_it_stops_matching():
    assert feed_all(["lo w"], ["Hel", "l", "o", "!"]) == ("Hello!", False)
    assert feed_all(["lo w"], ["foo l"]) == ("foo l", False)   # flush returns the held "l"


def test_overlapping_prefixes():
    # "aab" inside "aaab": the held "aa" must slide by one, not be dropped or emitted whole
    assert feed_all(["aab"], ["a", "a", "a", "b", "c"]) == ("a", True)
    assert feed_all(["abab"], ["ab", "ab", "ab"]) == ("", True)
    assert feed_all(["abac"], ["ab", "ab", "ac"]) == ("ab", True)


def test_several_stops_earliest_occurrence_wins():
    assert feed_all(["END", "\n\n"], ["hello\n", "\nEND"]) == ("hello", True)
    assert feed_all(["b", "abc"], ["za", "bc"]) == ("z", True)       # "abc" starts before "b"
    assert feed_all(["", "x"], ["ab", "cx"]) == ("abc", True)        # empty stops are ignored
    assert feed_all(None, ["ab", "c"]) == ("abc", False)


def test_stop_checker_matches_find_on_random_splits():
    rng = random.Random(0)
    for _ in range(500):
        text = "".join(rng.choice("ab ") for _ in range(rng.randint(0, 20)))
        stops = ["".join(rng.choice("ab ") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 6))))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
        # Generation stops at the first piece that completes a stop; the text so far is cut
        # before the earliest stop in it (a longer stop that would complete later never does).
        expected, so_far = (text, False), ""
        for p in pieces:
            so_far += p
            hits = [i for i in (so_far.find(s) for s in stops) if i >= 0]
            if hits:
                expected = (so_far[: min(hits)], True)
                break
        assert feed_all(stops, pieces) == expected, (text, stops, pieces)
