"""Agents: a task suite scored by the eval runner (oracle vs embedded model), and tool-call validity with and without the grammar.

The suite is benchmarks/data/agent_tasks.yaml: 23 tasks with checkable answers — 8 arithmetic, 8
over a shop database (SQLite) and 7 look-ups in a company handbook (a knowledge base embedded with
MiniLM), both built here in a temporary directory with made-up facts. Every task gets the same
three built-in tools: `calculator`, `sql_tool(db)` → `sql`, `kb_search_tool(kb, k=2)` →
`search_handbook`. The eval runner scores the answers with the suite's `regex` / `icontains`
assertions; its "model" is `AgentModel`, an `lk.Agent` behind the Model protocol (the last user
message is the task, the agent's final answer is the reply).

  oracle      `lk.model("openai:oracle", base_url=...)` against a loopback OpenAI-compatible server
              (tests/loopback.py) that plays a perfect agent: it reads the task, replies with the
              task's planned tool call (metadata.tool/input, the argument named from the request's
              tool schema), then reads the tool result and answers with it (the number, the SQL
              rows, the top passage). It never sees the expected answer, so 100% says every
              expected answer is what the tools return and the HTTP tool-calling loop works.
  embedded    `lk.model()` (SmolLM2-135M on llama.cpp), grammar-constrained tool calls under
              tool_choice="auto", greedy, --max-tokens per step, --max-steps model calls.
  validity    for each task's first step (system prompt + task, all three tools), one call from
              the embedded model (a) with the tool-call grammar, tool_choice="required", and (b)
              without it: the same prompt (`structured.tools.as_template_messages`, the Hermes
              <tool_call> format and TOOLS_PROMPT) generated freely and read with
              `structured.tools.parse`. A reply is valid when it holds at least one call, every
              call names a real tool and its arguments validate against the tool's schema. A
              constrained reply that max_tokens cuts inside its call holds no call, so it counts
              as invalid ("cut in a call"); those are re-run once with --retry-tokens to tell a
              budget cut from a grammar failure. Both sides get one call per reply
              (parallel_tool_calls=False on the grammar side).

Targets (issue): oracle success 100%; constrained validity 100%. The embedded success rate is
reported as it is.

    python benchmarks/agents.py [--max-steps 4] [--max-tokens 128] [--validity-tokens 160] [--retry-tokens 600] [--limit N]
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "data" / "agent_tasks.yaml"
sys.path.insert(0, str(ROOT / "tests"))  # the project's loopback HTTP server

from loopback import Loopback, Reply

import llmkit as lk
from llmkit.core.sampling import Sampling
from llmkit.core.types import Completion, Usage
from llmkit.models.base import Model

SYSTEM = "You answer questions with the tools. Call the right tool, then give the answer in one short sentence."


# --- the world: a shop database and a company handbook (made up, so no model knows them) -------------------

CUSTOMERS = [(1, "Mira Okafor", "Lisbon"), (2, "Jonas Berg", "Oslo"), (3, "Priya Nair", "Pune"),
             (4, "Tomás Rivera", "Valencia"), (5, "Chen Wei", "Suzhou"), (6, "Ada Kowalski", "Kraków"),
             (7, "Lena Fischer", "Graz"), (8, "Samuel Adeyemi", "Accra")]
PRODUCTS = [(1, "Blue Kettle", "kitchen", 34.50), (2, "Cast Iron Pan", "kitchen", 59.00),
            (3, "Herb Planter", "garden", 18.75), (4, "Pruning Shears", "garden", 24.00),
            (5, "Hose Reel", "garden", 72.40), (6, "Desk Lamp", "office", 41.90),
            (7, "Notebook Set", "office", 12.00), (8, "Green Tea Tin", "pantry", 8.25),
            (9, "Espresso Beans", "pantry", 16.80)]
ORDERS = [(1001, 1, 1, 1, "2024-01-05"), (1002, 2, 8, 4, "2024-01-07"), (1003, 2, 3, 2, "2024-01-12"),
          (1004, 3, 6, 1, "2024-02-01"), (1005, 4, 2, 1, "2024-02-03"), (1006, 2, 9, 3, "2024-02-10"),
          (1007, 5, 5, 1, "2024-02-14"), (1008, 6, 8, 6, "2024-03-01"), (1009, 7, 4, 2, "2024-03-03"),
          (1010, 1, 7, 5, "2024-03-09"), (1011, 8, 8, 2, "2024-03-15"), (1012, 3, 9, 1, "2024-03-20")]

HANDBOOK = {
    "vacation.md": "Vacation policy. Full-time employees at Brightwater receive 27 paid vacation days per year. "
                   "Up to 5 unused days carry over to the next year. Ask for leave in the HR portal two weeks ahead.",
    "expenses.md": "Expense reports. Submit an expense report within 45 days of the purchase, with a photo of each "
                   "receipt. Meals while travelling are reimbursed up to 60 euros per day.",
    "helpdesk.md": "IT helpdesk. The IT helpdesk answers on phone extension 4417 from 8:00 to 18:00 on weekdays. "
                   "Outside those hours, write to the #it-urgent channel.",
    "offices.md": "Offices. The head office is at 12 Harbour Street in Ostend. A second office opened in Ghent in "
                  "2022. Visitors sign in at the front desk on the ground floor.",
    "culture.md": "Culture. The company mascot is a grey heron called Pim, after the bird that nests by the harbour. "
                  "Pim is on every team's sticker.",
    "hardware.md": "Hardware. Laptops are replaced every 4 years and phones every 3 years. Broken hardware is "
                   "swapped at the IT desk the same day.",
    "security.md": "Security. Report phishing and lost badges to security@brightwater.example. A badge is switched "
                   "off within one hour of the report.",
    "oncall.md": "On-call. The on-call rotation hands over every Tuesday at 10:00. Whoever is on call gets a bonus "
                 "of 150 euros per week.",
    "parking.md": "Parking. The garage has 40 spaces, given out by lottery each January. Bicycles park for free in "
                  "the courtyard.",
    "wifi.md": "Wi-Fi. The staff network is BW-Staff and the guest network is BW-Guest. The guest password changes "
               "every Monday.",
    "lunch.md": "Lunch. The canteen serves lunch from 11:45 to 14:00. Thursday is soup day.",
    "training.md": "Learning. Every employee has a yearly training budget of 1,200 euros for courses, books and "
                   "conferences.",
}


def make_db(path: Path) -> str:
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                             product_id INTEGER REFERENCES products(id), quantity INTEGER NOT NULL, order_date TEXT);
    """)
    con.executemany("INSERT INTO customers VALUES (?, ?, ?)", CUSTOMERS)
    con.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", PRODUCTS)
    con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", ORDERS)
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def make_tools(tmp: Path) -> dict[str, lk.agents.FunctionTool]:
    """The three tools every task gets, over a fresh database and knowledge base under ``tmp``."""
    from llmkit.agents.builtin import calculator, kb_search_tool, sql_tool
    from llmkit.rag.kb import KnowledgeBase
    from llmkit.rag.loaders import Document

    kb = KnowledgeBase(str(tmp / "handbook.db"))  # the embedded MiniLM
    kb.add_documents([Document(text, {"source": name}) for name, text in HANDBOOK.items()], progress=False)
    tools = [calculator, sql_tool(make_db(tmp / "shop.db")), kb_search_tool(kb, k=2, name="handbook")]
    return {t.name: t for t in tools}


# --- the agent as a model the eval runner can call ------------------------------------------------------

class AgentModel(Model):
    """An ``lk.Agent`` behind the Model protocol: the last user message is the task, the final answer
    the reply; each sampling field of the call goes to every model call of the run (one tool call per
    reply: without that SmolLM2 repeats calls until max_tokens under the grammar). ``runs`` keeps
    each task's ``AgentResult`` (steps, tool calls) for the report."""

    provider = "agent"
    supported = frozenset(Sampling.model_fields)

    def __init__(self, name: str, model: Model, tools: dict, max_steps: int, **agent: Any):
        super().__init__(name)
        self.model, self.tools, self.max_steps, self.agent = model, list(tools.values()), max_steps, agent
        self.runs: dict[str, lk.agents.AgentResult] = {}

    def _chat(self, messages, s, tools, tool_choice, constraint=None) -> Completion:
        task = messages[-1].content
        agent = lk.Agent(self.model, tools=self.tools, system=SYSTEM, max_steps=self.max_steps,
                         parallel_tool_calls=False, **self.agent, **s.set_fields())  # one call a step: each task needs one
        r = agent.run(task)
        self.runs[task] = r
        return Completion(text=r.text, finish_reason="stop" if r.stopped == "done" else "length",
                          usage=Usage(input_tokens=r.usage[0], output_tokens=r.usage[1]), model=self.name,
                          provider=self.provider)


# --- the oracle: a loopback OpenAI-compatible server playing a perfect agent ---------------------------------

def oracle_handler(plans: dict[str, tuple[int, str, str]]):
    """``plans``: task → (case number, tool name, input). First turn: the planned call; after the
    tool result: an answer read from it."""

    def reply(message: dict, finish: str) -> Reply:
        return Reply(200, {"id": "chatcmpl-oracle", "object": "chat.completion", "created": int(time.time()),
                           "model": "oracle", "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                           "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})

    def handle(req) -> Reply:
        assert req.path == "/v1/chat/completions", f"no route {req.path}"
        body = req.json
        msgs = body["messages"]
        task = next(m["content"] for m in msgs if m["role"] == "user")
        n, name, value = plans[task]
        offered = {t["function"]["name"]: t["function"]["parameters"] for t in body.get("tools") or []}
        assert name in offered, f"the agent does not offer {name!r}; it offers {sorted(offered)}"
        call_id = f"call_oracle_{n}"
        if msgs[-1]["role"] != "tool":
            arg = offered[name]["required"][0]  # the tool's one required argument: expression / query
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps({arg: value})}}
            return reply({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")
        assert msgs[-1]["tool_call_id"] == call_id, f"tool result for {msgs[-1]['tool_call_id']}, not {call_id}"
        return reply({"role": "assistant", "content": read_result(name, msgs[-1]["content"])}, "stop")

    return handle


def read_result(tool: str, content: str) -> str:
    """What the oracle answers from a tool result: the number, the SQL rows, or the top passage."""
    if content.startswith("Error:"):
        return f"The tool failed: {content}"
    data = json.loads(content)
    if tool == "calculator":
        return f"The answer is {data}."
    if tool == "sql":
        return "The answer is " + ", ".join(str(v) for row in data["rows"] for v in row) + "."
    return f"The handbook says: {data[0]['text']}" if data else "The handbook has nothing on that."


# --- tool-call validity ----------------------------------------------------------------------------------

OUTCOMES = ("valid", "cut in a call", "no call", "unparseable", "unknown tool", "bad arguments")


def judge(c: Completion, calls: list, tools: dict) -> str:
    """``valid``, or why not (one of ``OUTCOMES``); ``cut in a call``: max_tokens ended the reply
    inside its first ``<tool_call>`` block, so it holds no complete call."""
    if not calls:
        return "cut in a call" if c.finish_reason == "length" and "<tool_call>" in c.text else "no call"
    for call in calls:
        if call.name not in tools:
            return "unknown tool"
        try:
            tools[call.name].validate(call.arguments)
        except lk.agents.ToolArgumentError:
            return "bad arguments"
    return "valid"


def first_call(m: Model, tools: dict, task: str, constrained: bool, max_tokens: int) -> tuple[Completion, str, list]:
    """The model's first step on ``task`` (system prompt + task, every tool): the reply, its outcome, its calls."""
    from llmkit.structured import tools as tool_format
    from llmkit.structured.constraints import Invalid

    specs = [t.spec for t in tools.values()]
    msgs = [lk.system(SYSTEM), lk.user(task)]
    if constrained:
        c = m.chat(msgs, tools=specs, tool_choice="required", parallel_tool_calls=False, temperature=0,
                   max_tokens=max_tokens)
        return c, judge(c, c.tool_calls, tools), c.tool_calls
    # the very prompt the grammar path renders (tools in the system message), generated freely
    c = m.chat(tool_format.as_template_messages(msgs, specs), temperature=0, max_tokens=max_tokens)
    try:
        calls = tool_format.parse(c.text)[1]
    except Invalid:
        return c, "unparseable", []
    return c, judge(c, calls, tools), calls


def validity(m: Model, tools: dict, cases, constrained: bool, max_tokens: int) -> dict:
    """One first step per task, with or without the tool-call grammar: outcome counts, how many first
    calls named the task's planned tool, the first tool named, the replies cut inside a call, time."""
    outcome, names, right, cut, t0 = Counter(), Counter(), 0, [], time.perf_counter()
    for case in cases:
        c, why, calls = first_call(m, tools, case.vars["task"], constrained, max_tokens)
        outcome[why] += 1
        names.update(call.name for call in calls[:1])
        right += bool(calls) and calls[0].name == case.metadata["tool"]
        if why == "cut in a call":
            cut.append((case, c.text))
    return {"outcome": outcome, "names": names, "right": right, "cut": cut, "n": len(cases),
            "seconds": time.perf_counter() - t0}


# --- report ------------------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


def score(run, agent: AgentModel, cases) -> dict[str, dict]:
    """Per kind (and ``all``): passed, right first tool, tool errors, steps, done, n."""
    meta = {c.vars["task"]: c.metadata for c in cases}
    out: dict[str, dict] = {}
    for row in run.rows:
        task = row.vars["task"]
        r, md = agent.runs.get(task), meta[task]
        tool_steps = r.tool_steps if r else []
        for kind in (md["kind"], "all"):
            s = out.setdefault(kind, Counter())
            s["n"] += 1
            s["passed"] += row.passed
            s["right tool"] += bool(tool_steps) and tool_steps[0].tool == md["tool"]
            s["tool errors"] += sum(t.error is not None for t in tool_steps)
            s["tool calls"] += len(tool_steps)
            s["steps"] += sum(x.kind == "model" for x in r.steps) if r else 0
            s["done"] += bool(r) and r.stopped == "done"
            s["errors"] += bool(row.output.error)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=4, help="most model calls per agent run")
    ap.add_argument("--max-tokens", type=int, default=None, help="tokens per model call (default: the suite's)")
    ap.add_argument("--validity-tokens", type=int, default=160, help="max_tokens of each validity call")
    ap.add_argument("--retry-tokens", type=int, default=600,
                    help="max_tokens for re-running the constrained replies cut inside a call (0: skip)")
    ap.add_argument("--concurrency", type=int, default=1, help="embedded agent runs in flight")
    ap.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    ap.add_argument("--no-validity", action="store_true", help="skip the tool-call validity part")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="llmkit-bench-agents-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # the database, the handbook, LLMKIT_HOME, even on a crash
    os.environ["LLMKIT_HOME"] = str(tmp / "home")  # no eval cache, no runs saved in ~/.llmkit
    os.environ["HF_HUB_OFFLINE"] = "1"
    from llmkit.evals import load_suite, run_suite

    t_all = time.perf_counter()
    suite = load_suite(SUITE)
    if args.limit:
        suite._cases = suite.cases[:args.limit]
    if args.max_tokens:
        suite.sampling = {**suite.sampling, "max_tokens": args.max_tokens}
    cases = suite.cases
    kinds = Counter(c.metadata["kind"] for c in cases)
    tools = make_tools(tmp)

    plans = {c.vars["task"]: (i, c.metadata["tool"], c.metadata["input"]) for i, c in enumerate(cases)}
    results = {}
    with Loopback(oracle_handler(plans)) as srv:
        remote = lk.model("openai:oracle", base_url=srv.url + "/v1", api_key="sk-loopback", max_retries=0)
        oracle = AgentModel("oracle", remote, tools, args.max_steps)
        t0 = time.perf_counter()
        run = run_suite(suite, models=["agent:oracle"], loaded={"agent:oracle": oracle}, concurrency=4,
                        cache=False, progress=False)
        results["oracle"] = (run, oracle, time.perf_counter() - t0, len(srv.requests))

    local = lk.model()
    # the first step must call a tool (through the grammar) and a run out of steps is asked for its
    # answer once more: without both, the 135M model answers from its own (wrong) knowledge
    embedded = AgentModel("embedded", local, tools, args.max_steps, tool_choice="required", answer_on_limit=True)
    t0 = time.perf_counter()
    run = run_suite(suite, models=["agent:embedded"], loaded={"agent:embedded": embedded}, concurrency=args.concurrency,
                    cache=False, progress=False)
    results["embedded"] = (run, embedded, time.perf_counter() - t0, None)

    valid = {}
    if not args.no_validity:
        for constrained in (True, False):
            valid[constrained] = validity(local, tools, cases, constrained, args.validity_tokens)
        retried = [(case, first_call(local, tools, case.vars["task"], True, args.retry_tokens))
                   for case, _ in (valid[True]["cut"] if args.retry_tokens else [])]

    # --- print ---
    print(f"agents: {len(cases)} tasks ({', '.join(f'{n} {k}' for k, n in kinds.items())}) from {SUITE.relative_to(ROOT)}, "
          f"scored by the eval runner; tools {', '.join(tools)} on every task; max_steps {args.max_steps}, "
          f"sampling {suite.sampling}, {os.cpu_count()} CPUs")
    print("oracle: openai:oracle over a loopback OpenAI-compatible server (the planned call, then an answer read "
          "from the tool result); embedded: SmolLM2-135M-Instruct Q4_1 on llama.cpp, grammar tool calls, tool_choice=auto")
    print(f"{'model':<10}{'tasks':<12}{'passed':>8}{'rate':>7}{'right tool':>12}{'tool calls':>12}{'tool errors':>13}"
          f"{'steps':>7}{'answered':>10}{'wall s':>8}")
    for name, (run, agent, wall, _) in results.items():
        per = score(run, agent, cases)
        for kind in [*kinds, "all"]:
            s = per[kind]
            print(f"{name:<10}{kind:<12}{s['passed']:>5}/{s['n']:<2}{s['passed'] / s['n']:>7.0%}{s['right tool']:>9}/{s['n']:<2}"
                  f"{s['tool calls']:>12}{s['tool errors']:>13}{s['steps']:>7}{s['done']:>7}/{s['n']:<2}"
                  f"{wall if kind == 'all' else float('nan'):>8.1f}".replace("nan", "   "))
    print(f"(oracle: {results['oracle'][3]} HTTP requests to the loopback; runner errors: "
          f"{sum(bool(r.output.error) for r in results['oracle'][0].rows)} oracle, "
          f"{sum(bool(r.output.error) for r in results['embedded'][0].rows)} embedded)")

    run, agent = results["embedded"][0], results["embedded"][1]
    print("embedded, task by task (first tool call -> answer):")
    for row in run.rows:
        r = agent.runs.get(row.vars["task"])
        first = r.tool_steps[0] if r and r.tool_steps else None
        call = f"{first.tool}({json.dumps(first.arguments, ensure_ascii=False)})" if first else "no tool call"
        said = (row.output.text or f"[{r.stopped if r else row.output.error}]").strip().replace("\n", " ")
        print(f"  {'PASS' if row.passed else 'fail'}  {row.description:<36} {call[:70]:<70} -> {said[:70]}")

    if valid:
        print(f"tool-call validity: {len(cases)} first steps (system prompt + task, all {len(tools)} tools), embedded model, "
              f"greedy, one call per reply, max_tokens {args.validity_tokens}")
        print(f"{'generation':<34}{'valid':>8}{'rate':>6}" + "".join(f"{c:>15}" for c in OUTCOMES[1:])
              + f"{'right tool':>12}{'wall s':>8}")
        for constrained, label in ((True, "grammar, tool_choice=required"), (False, "no grammar, same prompt, parsed")):
            v = valid[constrained]
            o = v["outcome"]
            print(f"{label:<34}{o['valid']:>5}/{v['n']:<2}{o['valid'] / v['n']:>6.0%}" + "".join(f"{o[c]:>15}" for c in OUTCOMES[1:])
                  + f"{v['right']:>9}/{v['n']:<2}{v['seconds']:>8.1f}")
        for constrained, label in ((True, "grammar"), (False, "no grammar")):
            print(f"  first tool named, {label}: " +
                  (", ".join(f"{k} {n}" for k, n in valid[constrained]["names"].most_common()) or "none"))
        for case, text in valid[True]["cut"]:
            print(f"  grammar, cut: {case.description:<34} {text.replace(chr(10), ' ')[:96]!r}")
        if retried:
            ok = sum(why == "valid" for _, (_, why, _) in retried)
            print(f"  those {len(retried)} again with max_tokens {args.retry_tokens}: {ok} valid, "
                  f"{sum(why == 'cut in a call' for _, (_, why, _) in retried)} cut again, "
                  f"{len(retried) - ok - sum(why == 'cut in a call' for _, (_, why, _) in retried)} otherwise invalid "
                  f"(output tokens: {', '.join(str(c.usage.output_tokens) for _, (c, _, _) in retried)})")

    oracle_rate = results["oracle"][0].pass_rate()
    print(f"oracle success rate = {oracle_rate:.0%}  (target 100%)  {verdict(oracle_rate == 1)}")
    print(f"embedded success rate = {results['embedded'][0].pass_rate():.0%}  (reported; no target)")
    if valid:
        rc, ru = (valid[k]["outcome"]["valid"] / valid[k]["n"] for k in (True, False))
        o = valid[True]["outcome"]
        finished = valid[True]["n"] - o["cut in a call"]
        print(f"constrained tool-call validity = {rc:.0%}  (target 100%)  {verdict(rc == 1)}")
        print(f"(constrained replies that finished within max_tokens: {o['valid']}/{finished} valid; "
              f"{o['cut in a call']} cut inside a call)")
        if retried:
            r2 = (o["valid"] + sum(why == "valid" for _, (_, why, _) in retried)) / valid[True]["n"]
            print(f"constrained tool-call validity, cut replies re-run with max_tokens {args.retry_tokens} = {r2:.0%}  "
                  f"(target 100%)  {verdict(r2 == 1)}")
        print(f"unconstrained tool-call validity = {ru:.0%}  (reported)")
    print(f"total {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
