"""Shell completion, driven through the real completion protocol in subprocesses.

bash: _FACEKP_COMPLETE=complete_bash COMP_WORDS=... COMP_CWORD=...; zsh and fish:
_FACEKP_COMPLETE=complete_zsh|complete_fish _TYPER_COMPLETE_ARGS=... . The bash script itself is
also sourced into a real bash and asked for completions, as a TAB press would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from facekp_cli.cli.main import app

BIN = Path(sys.executable).parent
FACEKP = str(BIN / "facekp")


def clean_env(**extra: str) -> dict[str, str]:
    ours = ("FACEKP_", "_FACEKP_", "COMP_", "_TYPER")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return {**env, **extra}


def complete(words: str, shell: str = "bash", cwd: Path | None = None) -> list[str]:
    """Completions for the command line `words` (a trailing space starts a new word)."""
    if shell == "bash":
        cword = len(words.split()) - (0 if words.endswith(" ") else 1)
        env = clean_env(_FACEKP_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword))
    elif shell == "zsh":
        env = clean_env(_FACEKP_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS=words)
    else:
        env = clean_env(_FACEKP_COMPLETE="complete_fish", _TYPER_COMPLETE_ARGS=words)
        env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    proc = subprocess.run([FACEKP], env=env, capture_output=True, text=True, cwd=cwd, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout.splitlines()


def leaf_commands() -> list[tuple[list[str], list[str]]]:
    """(path, long option names) for every runnable command in the real CLI."""
    out = []

    def walk(command, path):
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        elif path:
            options = [o for p in command.params if not getattr(p, "hidden", False) for o in p.opts]
            out.append((path, [o for o in options if o.startswith("--")]))

    walk(typer.main.get_command(app), [])
    return out


# --- the protocol --------------------------------------------------------------------------------


def test_verb_completes():
    assert complete("facekp tra") == ["train", "tracking"] and complete("facekp trai") == ["train"]


def test_every_verb_is_offered():
    offered = complete("facekp ")
    for verb in ("data", "train", "infer", "eval", "export", "config"):
        assert verb in offered


def test_global_options_complete():
    offered = complete("facekp --")
    for option in ("--config", "--set", "--verbose", "--quiet", "--version", "--show-completion"):
        assert option in offered


@pytest.mark.parametrize(("path", "options"), leaf_commands(), ids=lambda v: " ".join(v) if v else "")
def test_options_of_every_command_complete(path, options):
    offered = complete("facekp " + " ".join(path) + " --")
    assert set(options) <= set(offered)


def test_subcommands_complete():
    assert {"show", "keys"} <= set(complete("facekp config "))


def test_choice_values_complete():
    assert complete("facekp config show --source ") == ["default", "preset", "file", "env", "flag"]
    assert complete("facekp config show --source e") == ["env"]
    assert complete("facekp --show-completion ") == ["bash", "zsh", "fish"]


def test_the_choice_options_that_were_plain_strings_complete():
    """export --format/--quantize, infer -f and data show --split offered nothing (plain <str>)."""
    assert complete("facekp export --format ") == ["onnx", "torchscript"]
    assert complete("facekp export --quantize ") == ["int8"]
    assert complete("facekp infer x.jpg -o p.json -f ") == ["json", "jsonl", "csv"]
    assert complete("facekp data show --split ") == ["train", "test"]


def test_config_show_source_preset_shows_what_a_preset_set():
    shown = CliRunner().invoke(app, ["--preset", "fast", "config", "show", "--source", "preset", "--json"])
    assert shown.exit_code == 0, shown.output
    sources = json.loads(shown.stdout)["sources"]
    assert sources and set(sources.values()) == {"preset:fast"}


def _choice_options() -> list[tuple[list[str], str, tuple]]:
    found = []
    for path, _ in leaf_commands():
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]
        for param in command.params:
            choices = getattr(getattr(param, "type_descriptor", None), "choices", None)
            long = [o for o in param.opts if o.startswith("--")]
            if choices and long:
                found.append((path, long[0], tuple(str(getattr(c, "value", c)) for c in choices)))
    return found


@pytest.mark.parametrize(("path", "option", "choices"), _choice_options(), ids=lambda v: str(v))
def test_every_choice_option_completes_its_values(path, option, choices):
    assert complete(f"facekp {' '.join(path)} {option} ") == list(choices)


def test_settings_keys_complete():
    assert complete("facekp config show train.ep") == ["train.epochs"]
    assert "tracking" in complete("facekp config show tr")
    assert complete("facekp --set train.bat") == ["train.batch_size="]


def test_file_paths_complete(tmp_path):
    (tmp_path / "a.toml").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.toml").write_text("")
    assert complete("facekp --config ", cwd=tmp_path) == ["a.toml", "sub/"]
    assert complete("facekp --config sub/", cwd=tmp_path) == ["sub/b.toml"]
    assert complete(f"facekp -c {tmp_path}/a", cwd=tmp_path) == [f"{tmp_path}/a.toml"]


def test_zsh_protocol():
    out = complete("facekp trai", shell="zsh")
    assert len(out) == 1 and '"train"' in out[0] and out[0].startswith("_arguments")


def test_fish_protocol():
    out = complete("facekp trai", shell="fish")
    assert [line.split("\t")[0] for line in out] == ["train"]


# --- installing the scripts ------------------------------------------------------------------


SCRIPT_MARKERS = {
    "bash": ("complete -o default -F _facekp_completion facekp", "_FACEKP_COMPLETE=complete_bash"),
    "zsh": ("#compdef facekp", "_FACEKP_COMPLETE=complete_zsh"),
    "fish": ("complete --command facekp", "_FACEKP_COMPLETE=complete_fish"),
}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_for_a_named_shell(shell):
    proc = subprocess.run([FACEKP, "--show-completion", shell], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for marker in SCRIPT_MARKERS[shell]:
        assert marker in proc.stdout


def test_show_completion_rejects_an_unknown_shell():
    proc = subprocess.run([FACEKP, "--show-completion", "tcsh"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "tcsh" in proc.stderr and "bash, zsh, fish" in proc.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_detects_the_running_shell(tmp_path, shell):
    """No shell named: the parent process decides (a bash binary renamed, as shellingham reads names)."""
    bash = shutil.which("bash")
    assert bash, "bash is needed to run this test"
    fake = tmp_path / shell
    fake.symlink_to(bash)
    # `; exit` keeps bash from exec-ing facekp in its own place, so bash stays the parent.
    command = f"'{FACEKP}' --show-completion; exit $?"
    proc = subprocess.run([str(fake), "-c", command], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert SCRIPT_MARKERS[shell][0] in proc.stdout


INSTALLED = {
    "bash": (".bash_completions/facekp.sh", ".bashrc"),
    "zsh": (".zfunc/_facekp", ".zshrc"),
    "fish": (".config/fish/completions/facekp.fish", None),
}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_install_completion_writes_into_home(tmp_path, shell):
    proc = subprocess.run(
        [FACEKP, "--install-completion", shell],
        capture_output=True,
        text=True,
        env=clean_env(HOME=str(tmp_path)),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    script, rc_file = INSTALLED[shell]
    assert SCRIPT_MARKERS[shell][1] in (tmp_path / script).read_text()
    if rc_file:
        assert (tmp_path / rc_file).is_file()
    assert shell in proc.stdout


def test_installed_bash_script_completes_in_a_real_bash(tmp_path):
    subprocess.run(
        [FACEKP, "--install-completion", "bash"], env=clean_env(HOME=str(tmp_path)), check=True, timeout=60
    )
    script = tmp_path / ".bash_completions" / "facekp.sh"
    program = f"""
        source '{script}'
        COMP_WORDS=(facekp trai); COMP_CWORD=1
        _facekp_completion facekp
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    env = clean_env(HOME=str(tmp_path), PATH=f"{BIN}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.split() == ["train"], proc.stderr
