"""The Chat tab in a real browser (Debian chromium via Playwright) against a live server on the
embedded model: streamed answers, the request panel, log-probabilities, Stop, and the API
staying responsive while the UI generates. Screenshots go to ``shots`` (see conftest.py)."""
from __future__ import annotations

import contextlib
import io
import json
import math
import time

import httpx
import pytest
from browser import open_ui, screenshot

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"
# With this system prompt every greedy token of the answer leads its runner-up by 0.7 nats or more.
# Without one, the first token is a near-tie ("L" -1.85 vs "The" -2.09): two greedy runs that share
# batches differently (prefix cache, other requests) can then part, and the UI/API comparison is moot.
SYSTEM = "Answer with one word."


def set_number(page, elem_id: str, value) -> None:
    """Type into a slider's or number box's number input and commit it (Gradio fires .change on Enter/blur)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def send(page, text: str) -> None:
    page.locator("#lk-message textarea").fill(text)
    page.locator("#lk-send").click()


def wait_finished(page, timeout_s: float = 60) -> str:
    """Wait for the stats line to say how the answer finished; return the line."""
    page.locator("#lk-stats", has_text="finish:").wait_for(timeout=timeout_s * 1000)
    return page.locator("#lk-stats").inner_text()


def bot_text(page) -> str:
    texts = page.locator("#lk-chatbot [data-testid=bot]").all_inner_texts()
    return texts[-1].strip() if texts else ""


def code_text(page, elem_id: str) -> str:
    """The text of a gr.Code panel (CodeMirror's lines, without gutter numbers)."""
    return page.locator(f"#{elem_id} .cm-content").inner_text()


def queue_joins(page) -> list[str]:
    """From now on, every event the page puts in Gradio's queue (its POSTs to ``queue/join``)."""
    joined: list[str] = []
    page.on("request", lambda r: joined.append(r.post_data or "") if "/queue/join" in r.url else None)
    return joined


def record_bot_text(page) -> None:
    """Record in the page every text the last assistant bubble shows, as it changes."""
    page.evaluate("""() => {
        window.__lkSeen = [];
        const box = document.querySelector('#lk-chatbot');
        new MutationObserver(() => {
            const bots = box.querySelectorAll('[data-testid=bot]');
            if (bots.length) window.__lkSeen.push(bots[bots.length - 1].innerText.trim());
        }).observe(box, {subtree: true, childList: true, characterData: true});
    }""")


def test_chat_streams_the_answer_the_api_gives_with_token_logprobs(ui_live, page, shots):
    joined = queue_joins(page)
    open_ui(page, ui_live.url)
    assert ui_live.app.state.served.name in page.locator("#lk-header").inner_text()
    page.locator("#lk-system textarea").fill(SYSTEM)
    page.locator("#lk-system textarea").press("Tab")
    set_number(page, "lk-temperature", 0)
    set_number(page, "lk-max_tokens", 24)
    record_bot_text(page)
    send(page, QUESTION)
    stats = wait_finished(page)
    # Page load, edits and the request preview run unqueued; Send queues one event. (Two
    # queued events of one page, one finishing as the other joins, can lose the second: see
    # serve/ui/context.py. That race hung about one CI run in three before.)
    assert len(joined) == 1, joined
    screenshot(page, shots, "chat-answered")

    # The same greedy request through the API gives the same tokens: the UI calls the served model.
    api = ui_live.openai().chat.completions.create(model=ui_live.app.state.served.name,
                                                   messages=[{"role": "system", "content": SYSTEM},
                                                             {"role": "user", "content": QUESTION}],
                                                   temperature=0, max_tokens=24)
    want = api.choices[0].message.content
    tokens = page.locator("#lk-token-view .lk-tok").all_text_contents()
    assert "".join(tokens) == want
    assert bot_text(page).split()[:3] == want.split()[:3]  # the bubble renders markdown; its words are the answer's
    assert f"{len(tokens)} tokens" in stats and "tokens/s" in stats

    # It streamed: the bubble showed partial answers, each a prefix of the final one, before the whole.
    seen = [s for s in page.evaluate("window.__lkSeen") if s]
    partial = {s for s in seen if s != bot_text(page)}
    assert partial, f"the answer appeared at once, never streamed: {seen[:5]}"
    assert all(bot_text(page).startswith(s.rstrip("…").strip()) for s in partial)

    # Greedy decoding picks the most likely token every time: each row's token is its own top-1
    # alternative, shown with 5 alternatives and p = exp(logprob).
    rows = page.locator("#lk-token-view table.lk-logprobs tbody tr")
    assert rows.count() == len(tokens)
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        _, token, p, logprob, *top = cells
        assert len(top) == 5
        assert top[0].rsplit(" ", 1)[0] == token
        assert float(p.rstrip("%")) == pytest.approx(100 * math.exp(float(logprob)), abs=0.15)  # both shown rounded

    # Regenerate replaces the answer (greedy: the same one) instead of adding a turn.
    # The new answer has arrived when the token view, emptied as the answer starts, is full again
    # (the old one stays up until then, "finish:" line included).
    page.evaluate("""() => {
        window.__lkTokens = [];
        const view = document.querySelector('#lk-token-view');
        new MutationObserver(() => window.__lkTokens.push(view.querySelectorAll('.lk-tok').length))
            .observe(view, {subtree: true, childList: true, characterData: true});
    }""")
    page.locator("#lk-regenerate").click()
    page.wait_for_function("window.__lkTokens.indexOf(0) >= 0 && window.__lkTokens.slice(window.__lkTokens.indexOf(0))"
                           ".some(n => n > 0)", timeout=60_000)
    wait_finished(page)
    assert page.locator("#lk-chatbot [data-testid=user]").count() == 1
    assert page.locator("#lk-chatbot [data-testid=bot]").count() == 1
    assert "".join(page.locator("#lk-token-view .lk-tok").all_text_contents()) == want
    assert len(joined) == 2, joined


def test_request_panel_shows_the_controls_and_its_request_works(ui_live, page, shots):
    open_ui(page, ui_live.url)
    page.locator("#lk-system textarea").fill("Answer in one word.")
    page.locator("#lk-system textarea").press("Tab")
    set_number(page, "lk-temperature", 1.3)
    set_number(page, "lk-top_k", 40)
    set_number(page, "lk-max_tokens", 8)
    page.locator("#lk-message textarea").fill("Name a colour.")
    page.get_by_text("show the request").click()
    page.locator("#lk-request-json .cm-content", has_text="Name a colour.").wait_for()  # the typed message too
    body = json.loads(code_text(page, "lk-request-json"))
    assert body["temperature"] == 1.3 and body["top_k"] == 40 and body["max_tokens"] == 8
    assert body["messages"] == [{"role": "system", "content": "Answer in one word."},
                                {"role": "user", "content": "Name a colour."}]
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert "top_p" not in body and "min_p" not in body  # controls left "off" are not sent
    screenshot(page, shots, "request-panel")

    # Changing temperature again updates the panel, and every view of it.
    set_number(page, "lk-temperature", 0.25)
    page.locator("#lk-request-json .cm-content", has_text='"temperature": 0.25').wait_for()
    page.get_by_role("tab", name="curl").click()
    assert '"temperature": 0.25' in code_text(page, "lk-request-curl")
    page.get_by_role("tab", name="Python (openai)").click()
    python = code_text(page, "lk-request-python")
    assert "temperature=0.25" in python and 'extra_body={"top_k": 40}' in python

    # What the panel shows is a request the API accepts, and the Python snippet runs as shown.
    body = {**json.loads(code_text(page, "lk-request-json")), "stream": False}
    r = httpx.post(ui_live.url + "/v1/chat/completions", json=body, timeout=60).raise_for_status().json()
    assert r["choices"][0]["message"]["content"] and r["choices"][0]["logprobs"]["content"]
    assert f"base_url=\"{ui_live.url}/v1\"" in python, python
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(python, {})  # noqa: S102 -- the snippet the page shows, run as a user would paste it
    assert printed.getvalue().strip()


def test_api_answers_while_the_ui_streams_and_stop_ends_the_generation(ui_live, page, shots):
    open_ui(page, ui_live.url)
    set_number(page, "lk-max_tokens", 600)
    set_number(page, "lk-seed", 7)
    send(page, "Write a long story about a dragon who learns to bake bread.")
    page.locator("#lk-chatbot [data-testid=bot]").last.wait_for()
    page.wait_for_function("document.querySelectorAll('#lk-chatbot [data-testid=bot]').length > 0 && "
                           "document.querySelector('#lk-chatbot [data-testid=bot]').innerText.trim().length > 0")

    t0 = time.perf_counter()
    api = ui_live.openai().chat.completions.create(model=ui_live.app.state.served.name, max_tokens=8, temperature=0,
                                                   messages=[{"role": "user", "content": "Say hi."}])
    api_s = time.perf_counter() - t0
    assert api.choices[0].message.content
    during = len(bot_text(page))
    assert "finish:" not in page.locator("#lk-stats").inner_text(), "the UI answer ended before the API call returned"
    page.wait_for_function(f"document.querySelector('#lk-chatbot [data-testid=bot]').innerText.trim().length > {during}")
    screenshot(page, shots, "streaming-while-api-answers")

    page.locator("#lk-stop").click()
    ui_live.wait_for("llmkit_active_sequences", 0, timeout=20)  # the engine stopped decoding the UI's answer
    stopped = bot_text(page)
    time.sleep(1.0)
    assert bot_text(page) == stopped and "finish:" not in page.locator("#lk-stats").inner_text()
    screenshot(page, shots, "stopped")
    assert api_s < 30
