"""`llmkit train <method>` as a user runs it (a subprocess of `python -m llmkit`): flags derived
from the config classes, YAML recipes with flags on top, one-line errors with a non-zero exit and no
traceback, and the run's summary. Plus the Python entry points `config()` and `run()`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import llmkit.train as T
from llmkit.core.errors import ConfigError

CHAT = [{"messages": [{"role": "user", "content": f"Name {i}?"}, {"role": "assistant", "content": f"It is {i}."}]}
        for i in range(6)]


def llmkit(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "llmkit", *args], check=False, capture_output=True, text=True, env=env, timeout=timeout)


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# --- help ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_help_lists_every_config_field_as_a_flag(method):
    r = llmkit("train", method, "--help")
    assert r.returncode == 0, r.stderr
    cls = T.config_class(method)
    missing = [name for name in cls.model_fields if name != "method" and f"--{name.replace('_', '-')}" not in r.stdout]
    assert not missing, f"flags missing from `llmkit train {method} --help`: {missing}"
    assert "--config" in r.stdout and "--lr" in r.stdout
    assert cls.model_fields["lora_r"].description in " ".join(r.stdout.split())  # the help text comes from the field


def test_train_help_lists_the_methods():
    r = llmkit("train", "--help")
    assert r.returncode == 0, r.stderr
    for method in T.METHODS:
        assert method in r.stdout


# --- a run from a recipe, flags on top ------------------------------------------------------
def test_recipe_with_flags_on_top_trains_and_prints_the_summary(tmp_path, tiny_dir):
    import yaml

    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in CHAT) + "\n")
    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model": str(tiny_dir), "data": str(data), "output_dir": str(out), "lr": 5e-3,
                                      "lora-r": 4, "max_steps": 2, "batch_size": 3, "val_split": 0.0, "merge": True}))
    r = llmkit("train", "sft", "--config", str(recipe), "--lr", "1e-3", "--no-merge", "--threads", "1")
    assert r.returncode == 0, r.stderr
    body = json.loads((out / "metrics.json").read_text())
    cfg = body["config"]
    assert cfg["learning_rate"] == 1e-3  # the flag beat the recipe's lr: 5e-3
    assert cfg["merge"] is False  # … and --no-merge beat merge: true
    assert cfg["lora_r"] == 4 and cfg["max_steps"] == 2 and cfg["batch_size"] == 3  # the rest of the recipe stands
    assert body["history"][0]["lr"] == pytest.approx(1e-3)  # and the run really used it
    assert not (out / "merged").exists()
    lines = r.stdout.splitlines()
    assert lines[0].startswith("2 steps")
    assert any(line.startswith("train loss") for line in lines)
    assert f"model      {out / 'final'}" in lines
    assert any(str(out / "curves.png") in line for line in lines)
    assert (out / "final" / "adapter_model.safetensors").exists()


# --- errors ----------------------------------------------------------------------------------
def test_an_unknown_recipe_key_is_a_one_line_error(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rat: 1.0e-3\ndata: chat.jsonl\n")
    assert_one_line_error(llmkit("train", "sft", "--config", str(recipe)), "learning_rat", "learning_rate")


def test_a_bad_data_row_is_a_one_line_error_with_the_row_number(tmp_path, tiny_dir):
    data = tmp_path / "chat.jsonl"
    bad = {"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hey"}]}
    data.write_text("\n".join(json.dumps(r) for r in [CHAT[0], CHAT[1], bad]) + "\n")
    assert_one_line_error(llmkit("train", "sft", "--data", str(data), "--model", str(tiny_dir),
                                 "--output-dir", str(tmp_path / "run")), "chat.jsonl", "row 3", "'bot'")
    assert not (tmp_path / "run").exists()  # nothing was written for a run that could not start


def test_a_bad_flag_value_is_a_one_line_error(tmp_path):
    assert_one_line_error(llmkit("train", "dpo", "--data", "x.jsonl", "--loss-type", "squared"), "squared")


# --- the Python entry points -----------------------------------------------------------------
def test_configure_layers_fields_over_a_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 3.0e-4\nloss-type: ipo\nbeta: 0.5\n")  # `lr` and dashes are accepted in recipes
    cfg = T.configure("dpo", recipe, beta=0.2)
    assert type(cfg).__name__ == "DPOConfig"
    assert (cfg.learning_rate, cfg.loss_type, cfg.beta) == (3e-4, "ipo", 0.2)
    with pytest.raises(ConfigError, match="beta"):
        T.configure("dpo", beta=-1)
    with pytest.raises(ConfigError, match="unknown DPOConfig field 'betta'"):
        T.configure("dpo", betta=0.1)
    with pytest.raises(ConfigError, match="unknown training method 'dpoo'.*dpo"):
        T.run("dpoo", data="x.jsonl")


def test_configure_still_works_after_a_trainer_is_imported():
    """Regression: the function was once named `config`, like the submodule `llmkit/train/config.py`;
    the first import of that submodule (every trainer imports it) rebound `llmkit.train.config` to the
    module, and `lk.train.config(...)` failed with "'module' object is not callable"."""
    import llmkit.train.sft  # noqa: F401  (imports llmkit.train.config)

    assert callable(T.configure) and T.configure("sft", lora_r=4).lora_r == 4
