"""`modelreg launch-cmd` and `modelreg launch-test`: thin wrappers over launch.planning and launch.running."""
from __future__ import annotations

import argparse
import json
import shlex
from typing import TYPE_CHECKING

from modelreg.cli.output import print_json, registry_from_args, say

if TYPE_CHECKING:
    from modelreg.launch.running.launch_test import LaunchTestResult


def cmd_launch_cmd(args: argparse.Namespace) -> None:
    from modelreg.launch.planning.plan import launch_plan
    registry = registry_from_args(args, reads_snapshot=True)
    plan = launch_plan(registry.entry(args.name), registry.settings)
    if args.json:
        return print_json(plan.to_dict())
    if plan.argv:
        say(plan.command_line())
    else:
        say(f"# {plan.name} runs in the Ollama daemon at {plan.base_url} (no process of ours): model "
              f"{plan.ollama_model}, options {json.dumps(plan.ollama_options, sort_keys=True)}")


def cmd_launch_test(args: argparse.Namespace) -> int:
    from modelreg.launch.running.launch_test import DEFAULT_PROMPT, launch_test
    from modelreg.launch.running.logs import resolve_log_dir
    registry = registry_from_args(args, reads_snapshot=True)
    entry = registry.entry(args.name)
    stream = None if args.quiet else (lambda text: say(text, stderr=True, end=""))
    result = launch_test(entry, registry.settings, resolve_log_dir(registry.config_dir, registry.settings),
                         timeout=args.timeout, prompt=args.prompt or DEFAULT_PROMPT, max_tokens=args.max_tokens,
                         on_log=stream)
    if args.json:
        print_json(result.to_dict())
    else:
        _print_result(result)
    return 0 if result.ok else 1


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _print_result(result: "LaunchTestResult") -> None:
    rows = [("ok", "yes" if result.ok else "NO"), ("backend", result.backend),
            ("argv", shlex.join(result.argv) if result.argv else "(Ollama daemon)"),
            ("ready after", _seconds(result.seconds_to_ready)),
            ("first response after", _seconds(result.seconds_to_first_response)),
            ("context size", str(result.context_size or "-")), ("reply", repr(result.reply)),
            ("log", result.log_path or "-")]
    if result.orphans_stopped:
        rows.append(("orphans stopped", ", ".join(result.orphans_stopped)))
    if result.error:
        rows.append(("error", result.error))
    for label, value in rows:
        say(f"{label:>21}: {value}")
    for finding in result.diagnosis:
        say(f"\ndiagnosis [{finding['rule']}]: {finding['summary']}\n  change: {finding['suggestion']}\n"
            f"  log: {finding['evidence']}")
    if not result.ok and result.log_tail:
        say("\nlog tail:\n" + result.log_tail)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("launch-cmd", help="print the command that starts a model",
                       description="print the argv that starts a model, built from its merged entry")
    p.add_argument("name", help="model name")
    p.add_argument("--json", action="store_true", help="print the whole launch plan as JSON")
    p.set_defaults(handler=cmd_launch_cmd)

    p = sub.add_parser("launch-test", help="start a model, ask it one question, stop it, and report",
                       description="start a model exactly as the registry says, wait until ready, send one chat "
                                   "completion (vision models also get a tiny image), stop it, and report the "
                                   "timings, the reply, the log tail and a diagnosis; exit 1 when it fails")
    p.add_argument("name", help="model name")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds to wait for readiness (default: backend_config.ready_timeout, else the setting)")
    p.add_argument("--prompt", default=None, metavar="TEXT", help="the test question (default: a greeting)")
    p.add_argument("--max-tokens", type=int, default=16, metavar="N", help="reply length limit (default 16)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="do not stream the backend's log to stderr")
    p.set_defaults(handler=cmd_launch_test)
