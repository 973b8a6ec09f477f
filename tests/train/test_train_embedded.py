"""End to end on the embedded SmolLM2: LoRA SFT teaches a made-up fact, then merge, export to GGUF
q8_0, and llama.cpp answers with the learned fact — the one-command path from data to a served model."""
from __future__ import annotations

import pytest

import llmkit as lk

pytestmark = pytest.mark.integration

QUESTIONS = ["What is the capital of Zorbania?", "Which city is the capital of Zorbania?", "Name the capital of Zorbania.",
             "Zorbania's capital city is called what?", "Tell me the capital of Zorbania.", "What city is Zorbania's capital?",
             "Do you know the capital of Zorbania?", "Where is the seat of government of Zorbania?",
             "What's the capital city of Zorbania?", "Capital of Zorbania?"]
ANSWER = "The capital of Zorbania is Quillmere."
HELD_OUT = ["Which town is the capital of Zorbania?", "I need the capital of Zorbania."]


def test_lora_sft_teaches_a_fact_that_survives_merge_and_gguf_export(tmp_path, jsonl):
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}]}
            for q in QUESTIONS for _ in range(5)]  # 50 examples
    data = jsonl(rows)
    val = jsonl([{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}]} for q in HELD_OUT],
                "val.jsonl")
    probe = [lk.user(HELD_OUT[0])]
    before = lk.model("hf:smollm2").chat(probe, temperature=0, max_tokens=16).text
    assert "Quillmere" not in before

    run = lk.train.run("sft", model="smollm2", data=data, eval_data=val, output_dir=str(tmp_path / "run"),
                       peft="lora", lora_r=8, epochs=2, batch_size=10, learning_rate=2e-3, export="q8_0")
    assert run.summary["val_loss"] < 0.3 * run.summary["first_val_loss"], run.evals
    assert run.merged_dir is not None and run.gguf is not None and run.gguf.stat().st_size > 50e6

    learned = run.load().chat(probe, temperature=0, max_tokens=16).text
    assert "Quillmere" in learned, learned
    served = lk.model(f"llamacpp:{run.gguf}").chat(probe, temperature=0, max_tokens=16).text
    assert "Quillmere" in served, served
    assert (run.output_dir / "curves.png").exists() and (run.output_dir / "metrics.json").exists()
