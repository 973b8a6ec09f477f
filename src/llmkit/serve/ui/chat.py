"""The Chat tab: a playground for one conversation with every sampling knob in view.

Streams the answer, stops it, regenerates it; shows tokens and tokens/s, each generated token
coloured by its probability with the top alternatives, and the exact request — as JSON, as a
curl command and as openai-SDK Python — that the same answer would take through ``/v1``.
"""
import html
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from ...core.errors import LLMKitError
from .context import UIContext

# Each control: (field, label, minimum, maximum, step, default, the value that means "off").
# A field at its "off" value is left out of the request, so backends that lack it still work.
SLIDERS = [
    ("temperature", "temperature", 0.0, 2.0, 0.05, 0.7, None),
    ("top_p", "top_p", 0.01, 1.0, 0.01, 1.0, 1.0),
    ("top_k", "top_k (0 = off)", 0, 200, 1, 0, 0),
    ("min_p", "min_p (0 = off)", 0.0, 1.0, 0.01, 0.0, 0.0),
    ("typical_p", "typical_p (1 = off)", 0.01, 1.0, 0.01, 1.0, 1.0),
    ("repetition_penalty", "repetition_penalty (1 = off)", 0.5, 2.0, 0.01, 1.0, 1.0),
    ("frequency_penalty", "frequency_penalty", -2.0, 2.0, 0.05, 0.0, 0.0),
    ("presence_penalty", "presence_penalty", -2.0, 2.0, 0.05, 0.0, 0.0),
    ("max_tokens", "max_tokens", 1, 2048, 1, 256, None),
]
TOP_LOGPROBS = 5
REFRESH_S = 0.05  # the streamed answer is redrawn at most this often
OPENAI_FIELDS = {"temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "stop", "max_tokens",
                 "logprobs", "top_logprobs"}  # the rest go in the SDK's extra_body (vLLM's names, llmkit accepts them)


def sampling_fields(values: list[Any], seed: float | None, stop: str, logprobs: bool) -> dict[str, Any]:
    """The sampling fields the controls set, in request order; "off" values left out."""
    out: dict[str, Any] = {}
    for (name, _, lo, hi, step, _, off), v in zip(SLIDERS, values):
        if v is None or v == off:
            continue
        out[name] = int(v) if isinstance(step, int) else round(float(v), 4)
    if seed is not None and seed >= 0:
        out["seed"] = int(seed)
    stops = [s.replace("\\n", "\n") for s in (stop or "").splitlines() if s]
    if stops:
        out["stop"] = stops
    if logprobs:
        out["logprobs"], out["top_logprobs"] = True, TOP_LOGPROBS
    return out


def conversation(system: str, history: list[dict], pending: str = "") -> list[dict[str, str]]:
    """The messages a request sends: the system prompt, the chat so far, the message being typed."""
    msgs = [{"role": "system", "content": system}] if system and system.strip() else []
    msgs += [{"role": m["role"], "content": _text(m["content"])} for m in history]
    if pending and pending.strip():
        msgs.append({"role": "user", "content": pending})
    return msgs


def _text(content: Any) -> str:
    """Chatbot content is a string, or (Gradio 6) a list of parts: keep the text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def request_body(model: str, messages: list[dict], fields: dict[str, Any]) -> dict[str, Any]:
    """The body of the ``/v1/chat/completions`` request that asks for the same answer."""
    return {"model": model, "messages": messages, **fields, "stream": True}


def curl_snippet(base_url: str, body: dict, key_required: bool) -> str:
    auth = '  -H "Authorization: Bearer $LLMKIT_API_KEY" \\\n' if key_required else ""
    payload = json.dumps(body, indent=2, ensure_ascii=False).replace("'", "'\\''")
    return (f"curl -N {base_url}/v1/chat/completions \\\n  -H 'Content-Type: application/json' \\\n{auth}"
            f"  -d '{payload}'")


def python_snippet(base_url: str, body: dict, key_required: bool) -> str:
    key = 'os.environ["LLMKIT_API_KEY"]' if key_required else '"unused"'
    args = {k: v for k, v in body.items() if k in OPENAI_FIELDS | {"model", "messages", "stream"}}
    extra = {k: v for k, v in body.items() if k not in args}
    lines = [f"    {k}={json.dumps(v, ensure_ascii=False) if k != 'messages' else _py_messages(v)},"
             for k, v in args.items()]
    if extra:
        lines.append(f"    extra_body={json.dumps(extra)},  # llmkit's extra sampling fields")
    call = "\n".join(lines).replace("=true,", "=True,").replace("=false,", "=False,")
    return (("import os\n" if key_required else "") + "from openai import OpenAI\n\n"
            f'client = OpenAI(base_url="{base_url}/v1", api_key={key})\n'
            f"stream = client.chat.completions.create(\n{call}\n)\n"
            "for chunk in stream:\n"
            "    if chunk.choices:\n"
            '        print(chunk.choices[0].delta.content or "", end="", flush=True)\n')


def _py_messages(messages: list[dict]) -> str:
    return "[\n" + "".join(f"        {json.dumps(m, ensure_ascii=False)},\n" for m in messages) + "    ]"


def token_view(logprobs: list[Any]) -> str:
    """Each generated token on a background from red (unlikely) to green (likely), its
    alternatives on hover, then a table: token, probability, log-probability, top alternatives."""
    if not logprobs:
        return "<p><em>No log-probabilities: tick “log-probabilities” and send a message.</em></p>"
    spans, rows = [], []
    for i, t in enumerate(logprobs):
        p = math.exp(t.logprob)
        alts = ", ".join(f"{_shown(tok)} {math.exp(lp):.1%}" for tok, lp in t.top)
        spans.append(f'<span class="lk-tok" style="background:{_colour(p)}" title="{html.escape(f"p={p:.1%}  top: {alts}")}">'
                     f"{html.escape(t.token)}</span>")
        if i < 400:  # a long answer's table would be unreadable; the coloured text has every token
            top = "".join(f"<td>{html.escape(_shown(tok))} <small>{math.exp(lp):.1%}</small></td>" for tok, lp in t.top)
            rows.append(f'<tr><td>{i}</td><td class="lk-t" style="background:{_colour(p)}">{html.escape(_shown(t.token))}</td>'
                        f"<td>{p:.1%}</td><td>{t.logprob:.3f}</td>{top}</tr>")
    head = "".join(f"<th>#{k + 1}</th>" for k in range(TOP_LOGPROBS))
    mean = sum(t.logprob for t in logprobs) / len(logprobs)
    return (f'<div id="lk-tokens"><p class="lk-text">{"".join(spans)}</p>'
            f"<p><small>{len(logprobs)} tokens, mean log-probability {mean:.3f}, perplexity {math.exp(-mean):.2f}"
            f"</small></p><table class=\"lk-logprobs\"><thead><tr><th>i</th><th>token</th><th>p</th><th>logprob</th>"
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _colour(p: float) -> str:
    return f"hsla({round(120 * p)}, 75%, 50%, 0.35)"  # hue 0 = red .. 120 = green


def _shown(token: str) -> str:
    return repr(token)[1:-1] if token.strip() != token or not token else token  # make spaces and newlines visible


def build(ctx: UIContext) -> None:
    """The Chat tab's components and events (inside the current ``gr.Tab``)."""
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="conversation", height=420, elem_id="lk-chatbot", buttons=["copy"])
            msg = gr.Textbox(label="message", placeholder="Ask something, then Enter", lines=2, elem_id="lk-message")
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="lk-send")
                stop = gr.Button("Stop", variant="stop", elem_id="lk-stop")
                regen = gr.Button("Regenerate", elem_id="lk-regenerate")
                clear = gr.Button("Clear", elem_id="lk-clear")
            stats = gr.Markdown("", elem_id="lk-stats")
        with gr.Column(scale=2):
            picker = gr.Dropdown(ctx.model_choices(), value=ctx.served.name, label="model", allow_custom_value=True,
                                 info="the served model, or a spec such as hf:smollm2 or openai:gpt-4o-mini",
                                 elem_id="lk-model")
            system = gr.Textbox(label="system prompt", lines=2, elem_id="lk-system")
            with gr.Accordion("sampling", open=True):
                sliders = [gr.Slider(lo, hi, value=default, step=step, label=label, elem_id=f"lk-{name}")
                           for name, label, lo, hi, step, default, _ in SLIDERS]
                seed = gr.Number(-1, precision=0, label="seed (-1 = random)", elem_id="lk-seed")
                stop_seq = gr.Textbox(label="stop sequences (one per line, \\n for a newline)", lines=1,
                                      elem_id="lk-stop-seq")
                want_logprobs = gr.Checkbox(True, label=f"log-probabilities (top {TOP_LOGPROBS} alternatives)",
                                            elem_id="lk-want-logprobs")
    with gr.Accordion("tokens and log-probabilities", open=True):
        tokens = gr.HTML(token_view([]), elem_id="lk-token-view")
    with gr.Accordion("show the request", open=False, elem_id="lk-request-panel"):
        gr.Markdown("The request this conversation sends next (the message being typed included); "
                    "while an answer streams, the request that asked for it.")
        with gr.Tabs():
            with gr.Tab("JSON"):
                request_json = gr.Code(language="json", label="request body", elem_id="lk-request-json")
            with gr.Tab("curl"):
                request_curl = gr.Code(language="shell", label="curl", elem_id="lk-request-curl")
            with gr.Tab("Python (openai)"):
                request_py = gr.Code(language="python", label="Python", elem_id="lk-request-python")

    # The address the browser reached this server at, for the snippets (set by the page on load).
    origin = gr.Textbox(visible=False, elem_id="lk-origin")
    controls = [picker, system, *sliders, seed, stop_seq, want_logprobs, origin]

    def base_url(seen: str) -> str:
        return (seen or f"http://{ctx.served.config.host}:{ctx.served.config.port}").rstrip("/")

    def describe(history, pending, model_name, system_prompt, *rest):
        *values, seed_v, stop_v, logprobs_v, seen = rest
        fields = sampling_fields(values, seed_v, stop_v, logprobs_v)
        return shown(conversation(system_prompt, history or [], pending), model_name, fields, base_url(seen))

    def shown(messages, model_name, fields, url):
        body = request_body(model_name or ctx.served.name, messages, fields)
        return (json.dumps(body, indent=2, ensure_ascii=False), curl_snippet(url, body, ctx.api_key_required),
                python_snippet(url, body, ctx.api_key_required))

    def respond(history, model_name, system_prompt, *rest) -> Iterator[tuple]:
        *values, seed_v, stop_v, logprobs_v, seen, key = rest
        ctx.check_key(key)
        history = list(history or [])
        if not history or history[-1]["role"] != "user":
            raise gr.Error("Nothing to answer: send a message first.")
        fields = sampling_fields(values, seed_v, stop_v, logprobs_v)
        messages = conversation(system_prompt, history)
        sent = shown(messages, model_name, fields, base_url(seen))
        model = ctx.model(model_name)
        history.append({"role": "assistant", "content": ""})
        text, lps, pieces, t0, first, last = [], [], 0, time.perf_counter(), None, None
        shown_at = t0
        yield history, "generating…", token_view([]), *sent
        try:
            chunks = model.stream(messages, **fields)  # checks the fields against the backend at once
        except LLMKitError as e:
            raise gr.Error(str(e)) from None
        try:
            for chunk in chunks:
                if chunk.text and first is None:
                    first = time.perf_counter()
                text.append(chunk.text)
                pieces += bool(chunk.text)
                lps += chunk.logprobs or []
                last = chunk
                if time.perf_counter() - shown_at >= REFRESH_S:  # one browser update per token costs more than the token
                    shown_at = time.perf_counter()
                    history[-1]["content"] = "".join(text)
                    yield history, _stats(len(lps) or pieces, last, t0, first, done=False), *(gr.skip(),) * 4
            history[-1]["content"] = "".join(text)
        except LLMKitError as e:
            raise gr.Error(str(e)) from None
        finally:
            chunks.close()  # a Stop (or a closed tab) ends the generation too
        yield history, _stats(len(lps) or pieces, last, t0, first, done=True), token_view(lps), *(gr.skip(),) * 3

    def send_message(message, history, *rest) -> Iterator[tuple]:
        """Send (or Enter): the typed message joins the chat, the box empties, the answer streams."""
        ctx.check_key(rest[-1])
        if not message or not message.strip():
            raise gr.Error("Type a message first.")
        history = list(history or []) + [{"role": "user", "content": message}]
        for i, out in enumerate(respond(history, *rest)):
            yield *out, "" if i == 0 else gr.skip()

    def regenerate(history, *rest) -> Iterator[tuple]:
        """Regenerate: the last answer is dropped and asked for again."""
        ctx.check_key(rest[-1])
        history = list(history or [])
        if history and history[-1]["role"] == "assistant":
            history.pop()
        if not history:
            raise gr.Error("Nothing to regenerate yet.")
        yield from respond(history, *rest)

    # One queued event per action: a Send is one generator (the user's turn, then the streamed
    # answer), not a quick step chained to the generation, and the request preview runs unqueued.
    # Gradio 6's page reads a tab's queued events over one stream that the server closes when the
    # last of them finishes; an event joined in that instant is never read (see context.py).
    key_input = [ctx.key] if ctx.key is not None else [gr.State("")]
    answer_in = [chatbot, *controls, *key_input]
    answer_out = [chatbot, stats, tokens, request_json, request_curl, request_py]
    events = [trigger(send_message, [msg, *answer_in], [*answer_out, msg], show_progress="minimal")
              for trigger in (msg.submit, send.click)]
    events.append(regen.click(regenerate, answer_in, answer_out, show_progress="minimal"))
    stop.click(None, cancels=events)

    preview_in = [chatbot, msg, *controls]
    preview_out = [request_json, request_curl, request_py]
    clear.click(lambda: ([], "", token_view([])), None, [chatbot, stats, tokens], queue=False).then(
        describe, preview_in, preview_out, queue=False, show_progress="hidden")
    # "always_last": one preview in flight per page, then one more with the latest values, so the
    # panel ends on the latest edit however the answers interleave (each takes a millisecond).
    if ctx.blocks is not None:
        ctx.blocks.load(None, None, origin, js="() => window.location.origin")  # then origin.change fills the panel
    gr.on([c.change for c in controls] + [msg.change], describe, preview_in, preview_out, queue=False,
          show_progress="hidden", trigger_mode="always_last")


def _stats(n: int, last: Any, t0: float, first: float | None, done: bool) -> str:
    """Tokens so far (log-probabilities count them exactly; else streamed pieces, then the usage)."""
    now = time.perf_counter()
    if done and last is not None and last.usage and last.usage.output_tokens:
        n = last.usage.output_tokens
    if not n and not done:
        return "generating…"
    rate = n / (now - first) if first and n > 1 and now > first else 0.0
    parts = [f"**{n}** tokens", f"**{rate:.1f}** tokens/s" if rate else "",
             f"first token after {first - t0:.2f} s" if first else ""]
    if done and last is not None:
        if last.usage and last.usage.input_tokens:
            parts.append(f"{last.usage.input_tokens} prompt tokens")
        parts.append(f"finish: {last.finish_reason or 'stopped'}")
    return " · ".join(p for p in parts if p)
